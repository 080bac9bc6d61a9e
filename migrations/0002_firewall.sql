-- The firewall: the candidate ruleset (what the next commit applies), in
-- normalized form, and the commit history with full snapshots.
--
-- Match fields are stored as the operator wrote them (the rule model's
-- text forms), so what comes back out is what went in.

-- Rules of the candidate. AUTOINCREMENT so a deleted rule's id is never
-- given to a new rule: ids name rules in counters and history.
create table firewall_rule (
    firewall_rule_id integer primary key autoincrement,
    chain text not null check (chain in ('forward', 'input')),
    -- Match order within the chain, from 0.
    position integer not null check (position >= 0),
    enabled integer not null check (enabled in (0, 1)),
    in_iface text,
    out_iface text,
    src text,
    dst text,
    proto text,
    sport text,
    dport text,
    icmp text,
    tcp_flags text,
    -- Comma-separated connection states; null means any.
    state text,
    action text not null check (action in ('accept', 'drop', 'reject')),
    comment text not null default '',
    created_at text not null default (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    updated_at text not null default (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    unique (chain, position)
);

-- Named address sets of the candidate.
create table firewall_set (
    firewall_set_id integer primary key autoincrement,
    name text not null unique,
    -- Order of the sets in the ruleset.
    position integer not null,
    comment text not null default '',
    created_at text not null default (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    updated_at text not null default (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);

-- Prefixes of a set, in the order written. Clustered on the key (without
-- rowid): sets reach hundreds of thousands of prefixes, and a separate
-- rowid b-tree would double the writes.
create table firewall_set_prefix (
    firewall_set_id integer not null references firewall_set (firewall_set_id) on delete cascade,
    position integer not null,
    prefix text not null,
    primary key (firewall_set_id, position)
) without rowid;

-- Default verdict of each chain in the candidate.
create table firewall_policy (
    chain text primary key not null check (chain in ('forward', 'input')),
    verdict text not null check (verdict in ('accept', 'drop', 'reject')),
    updated_at text not null default (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);

-- An empty ruleset is a router, not a wall (see Policies::default).
insert into firewall_policy (chain, verdict) values ('forward', 'accept'), ('input', 'accept');

-- Every ruleset that was applied, newest last. `ruleset` is the full
-- snapshot (JSON of the rule model, ids included), so any commit can be
-- shown or re-applied without replaying history; `diff` is against the
-- commit that was active before it (one line per change).
create table firewall_commit (
    firewall_commit_id integer primary key autoincrement,
    created_at text not null default (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    author text not null,
    comment text not null default '',
    ruleset text not null,
    diff text not null,
    forward_rules integer not null,
    input_rules integer not null,
    sets integer not null,
    prefixes integer not null,
    active integer not null default 0 check (active in (0, 1))
);

-- At most one commit is active.
create unique index firewall_commit_active on firewall_commit (active) where active = 1;
