-- The auth mode of every audit entry in a column of its own (password, token, proxy, or
-- 'no auth'), so that the audit and history views can show and filter how an actor proved
-- who they are. NULL for the dashboard's own entries. Entries from before this column get
-- the mode their actor's name carries ("alice (password)"); anonymous ones are 'no auth'.
ALTER TABLE audit_log ADD COLUMN mode TEXT;

UPDATE audit_log SET mode = CASE
    WHEN actor LIKE '% (password)' THEN 'password'
    WHEN actor LIKE '% (token)' THEN 'token'
    WHEN actor LIKE '% (proxy)' THEN 'proxy'
    WHEN actor LIKE 'anonymous%' THEN 'no auth'
    ELSE NULL
END;
