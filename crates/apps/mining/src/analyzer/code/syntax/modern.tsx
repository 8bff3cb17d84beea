// TypeScript 5: satisfies, const type parameters, decorators, enums, template literal
// types, using declarations.
enum Level { Low = 1, High }

type Route = `/${string}`;

function routes<const T extends readonly Route[]>(paths: T): T {
  return paths;
}

const settings = { level: Level.High, path: "/home" } satisfies { level: Level; path: Route };

function logged(target: any, context: ClassMethodDecoratorContext) {
  return target;
}

class Service {
  @logged
  run(input?: string): number {
    return input?.length ?? 0;
  }
}

export abstract class Base<T> implements Iterable<T> {
  abstract [Symbol.iterator](): Iterator<T>;
}

export const Greeting = ({ name }: { name: string }) => <p className="hi">Hello, {name}!</p>;
