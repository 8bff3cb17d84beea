# Ruby 3.3: endless methods, pattern matching, hash shorthand, numbered and `it` block
# parameters, argument forwarding.
class Point
  attr_reader :x, :y

  def initialize(x:, y:) = (@x, @y = x, y)

  def to_h = { x:, y: }

  def self.parse(input)
    case input
    in { x: Integer => x, y: Integer => y }
      new(x:, y:)
    in [Integer => x, Integer => y]
      new(x:, y:)
    else
      raise ArgumentError, "not a point: #{input.inspect}"
    end
  end

  def shifted(...) = self.class.new(...)

  def doubled = [x, y].map { _1 * 2 }
end
