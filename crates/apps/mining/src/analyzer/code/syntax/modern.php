<?php
// PHP 8.3: enums, readonly classes, match, named arguments, first-class callables,
// attributes, typed class constants, nullsafe operator.
declare(strict_types=1);

namespace App;

enum Status: string
{
    case Active = 'active';
    case Closed = 'closed';

    public function label(): string
    {
        return match ($this) {
            self::Active => 'Open',
            self::Closed => 'Done',
        };
    }
}

#[\Attribute]
final readonly class Account
{
    public const string PREFIX = 'acc_';

    public function __construct(public int $id, public ?Status $status = null) {}

    public function name(): string
    {
        $format = sprintf(...);
        return $format('%s%d (%s)', self::PREFIX, $this->id, $this->status?->label() ?? 'new');
    }
}

$account = new Account(id: 7, status: Status::Active);
