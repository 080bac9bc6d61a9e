-- Per-rule `log` flag: packets a logging rule drops or rejects are sent to
-- the event log (sampled and rate limited by the daemon). Only the
-- candidate's rules need the column: commits store the whole ruleset as
-- JSON (`firewall_commit.ruleset`), where the flag is a field of the rule
-- model, so history and rollback carry it without a schema change.
alter table firewall_rule add column log integer not null default 0 check (log in (0, 1));
