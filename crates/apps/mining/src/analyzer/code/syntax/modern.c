// C23: attributes, bool/true keywords, typeof, digit separators, static_assert, nullptr.
#include <stdbool.h>
#include <stddef.h>

[[nodiscard]] static inline int clamp(int value, int low, int high) {
    constexpr int limit = 1'000'000;
    static_assert(sizeof(int) >= 4, "int is 32 bits");
    typeof(value) result = value < low ? low : value > high ? high : value;
    return result > limit ? limit : result;
}

struct point { int x, y; };

int main(void) {
    struct point p = { .x = 1, .y = 2 };
    int *nothing = nullptr;
    bool ok = true;
    return ok && nothing == NULL ? clamp(p.x, 0, 10) : 0;
}
