# Python 3.12: type parameters, type aliases, match, walrus, nested f-strings, except*.
type Pair[T] = tuple[T, T]


def first[T](items: list[T], default: T | None = None) -> T | None:
    if (n := len(items)) > 0:
        return items[0]
    return default


def describe(value: object) -> str:
    match value:
        case {"name": str(name), **rest}:
            return f"{name} with {len(rest)} more"
        case [x, y, *_] if x == y:
            return f"starts with {x!r} twice"
        case _:
            return f"{'nothing' if value is None else f'{value}'}"


async def run(tasks):
    try:
        async with tasks as group:
            return [await t async for t in group]
    except* ValueError as errors:
        raise RuntimeError(errors) from None
