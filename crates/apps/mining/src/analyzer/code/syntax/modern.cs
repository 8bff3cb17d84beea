// C# 12: file-scoped namespace, primary constructors, records, collection expressions,
// list and property patterns, raw strings, switch expressions.
namespace Shop;

public record Item(string Name, decimal Price);

public sealed class Cart(IEnumerable<Item> items)
{
    private readonly List<Item> _items = [.. items];

    public decimal Total => _items.Sum(i => i.Price);

    public string Describe() => _items switch
    {
        [] => "empty",
        [var only] => $"one: {only.Name}",
        [{ Price: > 100m }, ..] => "starts expensive",
        _ => """
             many items
             """,
    };

    public bool Has(string? name) => name is not null && _items.Any(i => i.Name == name);
}
