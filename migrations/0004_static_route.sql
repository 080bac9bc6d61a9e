-- Static routes configured through the API. Each is installed into the
-- kernel (table main, protocol xdpgate) and from there reaches FRR and, by
-- the netlink sync, the XDP maps; the daemon installs them again at start.
create table static_route (
    static_route_id integer primary key autoincrement,
    -- Canonical text (no host bits), one route per prefix.
    prefix text not null unique,
    -- unicast, blackhole, unreachable or prohibit.
    kind text not null check (kind in ('unicast', 'blackhole', 'unreachable', 'prohibit')),
    gateway text,
    dev text,
    -- Kernel metric (priority); null: the kernel's default.
    metric integer check (metric is null or metric >= 0),
    comment text not null default '',
    created_at text not null default (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    updated_at text not null default (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    check (kind = 'unicast' or (gateway is null and dev is null)),
    check (kind != 'unicast' or gateway is not null or dev is not null)
);
