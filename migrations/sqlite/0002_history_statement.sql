-- What a routed statement touched, as policies on query content saw it (recorded only while such
-- a policy exists): its kind (select, insert, ...) and the catalogs it names, comma-separated.
ALTER TABLE te_query_history ADD COLUMN statement_type VARCHAR(32);
ALTER TABLE te_query_history ADD COLUMN catalogs VARCHAR(1024);
