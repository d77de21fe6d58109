-- V18: the reader may ask the server how it would run a query (SHOWPLAN),
-- which the audited investigation path uses to have SQL Server's own parser
-- count the statements of a support query before running it: a batch that
-- holds anything but exactly one SELECT is refused, whatever our lexical
-- check made of it. SHOWPLAN reveals plans of queries the reader may run
-- anyway (it can already SELECT every business and history table); it
-- grants no access to data.
GRANT SHOWPLAN TO reader_role;
