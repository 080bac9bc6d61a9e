-- A commit applied with `confirm_within` that has not been confirmed yet
-- (Junos `commit confirmed`). At most one row. The daemon does not carry
-- the timer across a restart: a row found at start means the operator
-- never confirmed, so the start restores `previous_commit_id`'s ruleset
-- (the empty ruleset when null) as a new commit and deletes the row.
create table firewall_pending_confirm (
    firewall_pending_confirm_id integer primary key check (firewall_pending_confirm_id = 1),
    firewall_commit_id integer not null references firewall_commit (firewall_commit_id),
    -- The commit that was active before; null: none (the empty ruleset).
    previous_commit_id integer references firewall_commit (firewall_commit_id),
    -- Seconds the operator gave, and the deadline (UTC, RFC 3339).
    confirm_within integer not null check (confirm_within > 0),
    deadline text not null,
    created_at text not null default (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);
