// C++20/23: concepts, requires, structured bindings, ranges, spaceship, coroutines' keywords.
#include <compare>
#include <concepts>
#include <ranges>
#include <vector>

template <typename T>
concept Number = std::integral<T> || std::floating_point<T>;

template <Number T>
auto sum(const std::vector<T>& values) -> T {
    T total{};
    for (const auto& [index, value] : values | std::views::enumerate) {
        if constexpr (std::is_integral_v<T>) { total += value * index; }
    }
    return total;
}

struct Version {
    int major, minor;
    auto operator<=>(const Version&) const = default;
};

auto pick(auto value) requires Number<decltype(value)> {
    return [=]<typename U>(U other) { return value < other ? other : value; };
}
