-- What a routed statement touched, as policies on query content saw it (recorded only while such
-- a policy exists): its kind (select, insert, ...) and the catalogs it names, comma-separated.
-- One statement: MySQL commits each ALTER on its own, and both columns come or neither does.
ALTER TABLE te_query_history ADD COLUMN statement_type VARCHAR(32), ADD COLUMN catalogs VARCHAR(1024);
