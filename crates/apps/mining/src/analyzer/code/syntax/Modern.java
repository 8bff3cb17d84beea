// Java 21: records, sealed interfaces, pattern matching for switch, record patterns,
// text blocks, var.
import java.util.List;

public class Modern {
    sealed interface Shape permits Circle, Square {}
    record Circle(double radius) implements Shape {}
    record Square(double side) implements Shape {}

    static double area(Shape shape) {
        return switch (shape) {
            case Circle(var r) when r > 0 -> Math.PI * r * r;
            case Circle c -> 0;
            case Square(double side) -> side * side;
        };
    }

    static String describe(Object o) {
        if (o instanceof String s && !s.isBlank()) {
            return """
                a string: %s
                """.formatted(s);
        }
        var items = List.of(1, 2, 3);
        return items.stream().map(i -> i * 2).toList().toString();
    }
}
