-- The login role the bot connects as: a member of meditron_app (migration 0003), which may read and
-- write the tables but may not UPDATE, DELETE or TRUNCATE audit_events, consent_events or erasures.
-- Run by the `app-role` step of compose.yaml as the database owner, after the migrations, every time
-- the stack starts (idempotent; it also sets the password again, so changing APP_DB_PASSWORD works):
--   psql -X -v ON_ERROR_STOP=1 -f app-role.sql     with APP_DB_USER and APP_DB_PASSWORD in the environment
-- The password is read from the environment (never a command-line argument).
\getenv app_user APP_DB_USER
\getenv app_password APP_DB_PASSWORD
SELECT :'app_user' = current_user AS is_owner,
       coalesce(:'app_password', '') = '' AS no_password,
       NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'meditron_app') AS no_group
\gset
\if :is_owner
  DO $$ BEGIN RAISE EXCEPTION 'APP_DB_USER must not be the database owner (POSTGRES_USER)'; END $$;
\elif :no_password
  DO $$ BEGIN RAISE EXCEPTION 'APP_DB_PASSWORD is empty'; END $$;
\elif :no_group
  DO $$ BEGIN RAISE EXCEPTION 'role meditron_app is missing: run the migrations (db upgrade) first'; END $$;
\endif
SELECT format('CREATE ROLE %I LOGIN', :'app_user')
 WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = :'app_user')
\gexec
SELECT format('ALTER ROLE %I WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS '
              'INHERIT PASSWORD %L', :'app_user', :'app_password')
\gexec
SELECT format('GRANT meditron_app TO %I', :'app_user')
\gexec
-- Nothing beyond meditron_app's grants: the role owns no objects and is in no other role.
SELECT format('REVOKE %I FROM %I', r.rolname, :'app_user')
  FROM pg_auth_members m
  JOIN pg_roles r ON r.oid = m.roleid
  JOIN pg_roles u ON u.oid = m.member
 WHERE u.rolname = :'app_user' AND r.rolname <> 'meditron_app'
\gexec
