// Scala 3: enums, given/using, extension methods, optional braces, union types.
enum Color:
  case Red, Green, Blue

trait Show[A]:
  def show(a: A): String

given Show[Color] with
  def show(c: Color): String = c.toString.toLowerCase

extension (c: Color)
  def isWarm: Boolean = c == Color.Red

def describe[A](a: A)(using s: Show[A]): String =
  s.show(a)

def size(x: Int | String): Int = x match
  case i: Int    => i
  case s: String => s.length

@main def run(): Unit =
  val colors = List(Color.Red, Color.Blue)
  for c <- colors if c.isWarm do
    println(describe(c))
