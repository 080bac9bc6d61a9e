-- Interfaces attached through the API (POST /api/v1/interfaces/{name}/attach),
-- with the mode they were given. The daemon attaches them again at start, so
-- a restart or an upgrade keeps XDP where the operator put it. Detaching
-- through the API deletes the row. `--iface` stays the configuration of the
-- interfaces it names: a row for one of those is not used at start.
create table saved_interface (
    -- A Linux interface name (IFNAMSIZ - 1 = 15 bytes at most).
    name text primary key not null check (length(name) between 1 and 15),
    mode text not null check (mode in ('native', 'skb')),
    saved_at text not null default (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);
