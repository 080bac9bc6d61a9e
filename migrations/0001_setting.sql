-- Daemon settings and facts that must survive restarts (key/value).
create table setting (
    key text primary key not null,
    value text not null,
    created_at text not null default current_timestamp,
    updated_at text not null default current_timestamp
);
