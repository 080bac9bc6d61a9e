-- API bearer tokens. A token reads `xg_<key_id>_<secret>`: `key_id` is not
-- secret and finds the row, `hash` is the argon2id PHC string of the secret
-- (the secret itself is shown once, by `xdpgate token create`, and never
-- stored). Revoked tokens stay listed, with `revoked_at` set.
create table api_token (
    api_token_id integer primary key autoincrement,
    name text not null,
    key_id text not null unique,
    hash text not null,
    created_at text not null default (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    last_used_at text,
    revoked_at text
);

-- A name belongs to one live token at a time; a revoked token's name can
-- be given to a new one.
create unique index api_token_name on api_token (name) where revoked_at is null;
