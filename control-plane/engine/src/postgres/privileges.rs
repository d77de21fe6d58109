//! What a tenant database holds and grants, as the PostgreSQL engine reads and sets it: the
//! schema read behind fingerprints (`SCHEMA_OBJECTS`), `platform.apply_grants`, and the grant
//! state (`GRANT_STATE`: what the grants set beyond the schema's objects) by which a migration
//! skips the grants where they would change nothing ([`grant_if_needed`]).

use std::collections::HashSet;
use std::sync::Mutex;

use tokio_postgres::types::ToSql;
use tokio_postgres::GenericClient;

use crate::fingerprint::{RawObject, SchemaSnapshot};
use crate::sql::pg_ident;
use crate::{EngineError, TenantNames};

/// The tenant's five role names in `platform.apply_grants`' order (owner, app_rw, audit_admin,
/// reader, investigator), as statement parameters.
pub(super) fn role_names(names: &TenantNames) -> [&(dyn ToSql + Sync); 5] {
    [
        &names.owner,
        &names.app_rw,
        &names.audit_admin,
        &names.reader,
        &names.investigator,
    ]
}

/// The tenant's grants, applied again in full (`platform.apply_grants`), and the investigator's
/// one right: appending investigation events (the audited path records every query with it
/// before running it).
pub(super) async fn apply_grants<C: GenericClient>(
    client: &C,
    names: &TenantNames,
) -> Result<(), EngineError> {
    client
        .execute(
            "SELECT platform.apply_grants($1, $2, $3, $4, $5)",
            &role_names(names),
        )
        .await?;
    client
        .batch_execute(&format!(
            "GRANT USAGE ON SCHEMA audit TO {inv}; \
             GRANT EXECUTE ON FUNCTION audit.record_investigation(text, jsonb, text) TO {inv}",
            inv = pg_ident(&names.investigator)
        ))
        .await?;
    Ok(())
}

/// Schemas the grants leave as they are: the schema's fingerprint and its grant state
/// ([`GRANT_STATE`]), read the same before and after `platform.apply_grants` in a committed
/// migration. A migration that finds both skips the grants. A handful per release; bounded all
/// the same.
#[derive(Debug, Default)]
pub(super) struct Granted(Mutex<HashSet<(String, String)>>);

impl Granted {
    /// Whether applying the grants left this schema and grant state unchanged in another
    /// database (so here they would change nothing).
    fn contains(&self, schema: &SchemaSnapshot, state: &str) -> bool {
        self.0
            .lock()
            .is_ok_and(|g| g.contains(&(schema.fingerprint.clone(), state.to_owned())))
    }

    /// Remembers a schema and grant state that applying the grants left unchanged in a
    /// committed migration.
    pub(super) fn remember(&self, schema: &SchemaSnapshot, state: String) {
        if let Ok(mut g) = self.0.lock() {
            if g.len() >= 256 {
                g.clear();
            }
            g.insert((schema.fingerprint.clone(), state));
        }
    }
}

/// What [`grant_if_needed`] found and did.
pub(super) struct GrantOutcome {
    /// The schema as the transaction will commit it.
    pub schema: SchemaSnapshot,
    /// The grants did not run.
    pub skipped: bool,
    /// The grant state, when the grants ran and left it and the schema as they were: for
    /// [`Granted::remember`] once the transaction commits.
    pub unchanged_state: Option<String>,
}

/// The grants again (`platform.apply_grants`) inside a migration's transaction, unless they
/// would change nothing: only product migrations are pending (`product_only`: the release's
/// text rules let them grant nothing and touch no platform object), and the schema, grant for
/// grant, and the grant state are a pair the grants were found to leave unchanged in another
/// database. A pair counts only when the grants ran and the reads before and after them agree:
/// a change committed by someone else between the grants and the second read shows as a
/// difference, and is never taken for what the grants leave. Drift takes the full path.
pub(super) async fn grant_if_needed<C: GenericClient>(
    client: &C,
    names: &TenantNames,
    granted: &Granted,
    product_only: bool,
) -> Result<GrantOutcome, EngineError> {
    let before = if product_only {
        Some((
            read_schema(client, names).await?,
            read_grant_state(client, names).await?,
        ))
    } else {
        None
    };
    if let Some((schema, _)) = before
        .as_ref()
        .filter(|(schema, state)| granted.contains(schema, state))
    {
        return Ok(GrantOutcome {
            schema: schema.clone(),
            skipped: true,
            unchanged_state: None,
        });
    }
    apply_grants(client, names).await?;
    let schema = read_schema(client, names).await?;
    let state = read_grant_state(client, names).await?;
    let unchanged = before.is_some_and(|(b_schema, b_state)| {
        b_schema.fingerprint == schema.fingerprint && b_state == state
    });
    Ok(GrantOutcome {
        schema,
        skipped: false,
        unchanged_state: unchanged.then_some(state),
    })
}

/// The tenant database's schema as `client` sees it (inside a migration's transaction: as it
/// will commit).
pub(super) async fn read_schema<C: GenericClient>(
    client: &C,
    names: &TenantNames,
) -> Result<SchemaSnapshot, EngineError> {
    let schemas: Vec<&str> = crate::fingerprint::SCHEMAS.to_vec();
    let principals: Vec<&str> = names.principals_drop_order().to_vec();
    let rows = client
        .query(SCHEMA_OBJECTS, &[&schemas, &principals])
        .await?;
    Ok(SchemaSnapshot::of(names, raw_objects(&rows)))
}

/// Rows of (kind, name, detail, principal) as the fingerprint takes them.
fn raw_objects(rows: &[tokio_postgres::Row]) -> Vec<RawObject> {
    rows.iter()
        .map(|r| RawObject {
            kind: r.get(0),
            name: r.get(1),
            detail: r.get(2),
            principal: r.get(3),
        })
        .collect()
}

/// What `platform.apply_grants` sets beyond the objects [`SCHEMA_OBJECTS`] reads: the
/// database's privileges, the default privileges, the built-in functions it closes to PUBLIC or
/// opens to the tenant's roles, the `public` schema and its tables, and the role names it
/// records. A privilege granted by someone other than the object's owner, or with grant option,
/// is told apart (the grants check for the owner's); an ACL still at its built-in default is
/// marked as such (the grants replace it).
const GRANT_STATE: &str = "\
    WITH db AS MATERIALIZED ( \
        SELECT datacl, datdba FROM pg_database WHERE datname = current_database()), \
    closed AS MATERIALIZED ( \
        SELECT p.oid, p.proowner, p.proacl FROM pg_proc p \
         WHERE p.pronamespace = 'pg_catalog'::regnamespace \
           AND (p.proname IN ('set_config', 'query_to_xml', 'query_to_xmlschema', \
                              'query_to_xml_and_xmlschema', 'cursor_to_xml', \
                              'cursor_to_xmlschema', 'loread', 'lowrite') \
                OR p.proname LIKE 'lo\\_%')), \
    pub AS MATERIALIZED ( \
        SELECT c.oid::regclass::text AS name, c.relacl AS acl, c.relowner AS owner FROM pg_class c \
         WHERE c.relnamespace = 'public'::regnamespace AND c.oid >= 16384 \
           AND c.relkind IN ('r', 'v', 'm', 'f', 'p', 'S') \
        UNION ALL \
        SELECT 'schema public', n.nspacl, n.nspowner FROM pg_namespace n WHERE n.nspname = 'public') \
    SELECT 'database acl', 'database', \
           x.privilege_type || CASE WHEN x.grantor = db.datdba THEN '' ELSE ' by another' END \
               || CASE WHEN x.is_grantable THEN ' with grant option' ELSE '' END, \
           CASE WHEN x.grantee = 0 THEN 'PUBLIC' ELSE pg_get_userbyid(x.grantee)::text END \
      FROM db CROSS JOIN LATERAL aclexplode(db.datacl) x \
    UNION ALL \
    SELECT 'database acl', 'database', 'built-in default', NULL FROM db WHERE db.datacl IS NULL \
    UNION ALL \
    SELECT 'default acl', pg_get_userbyid(d.defaclrole), \
           coalesce(n.nspname, '*') || ' ' || d.defaclobjtype::text || ' ' || x.privilege_type \
               || CASE WHEN x.is_grantable THEN ' with grant option' ELSE '' END, \
           CASE WHEN x.grantee = 0 THEN 'PUBLIC' ELSE pg_get_userbyid(x.grantee)::text END \
      FROM pg_default_acl d LEFT JOIN pg_namespace n ON n.oid = d.defaclnamespace \
     CROSS JOIN LATERAL aclexplode(d.defaclacl) x \
    UNION ALL \
    SELECT 'built-in acl', p.oid::regprocedure::text, \
           x.privilege_type || CASE WHEN x.grantor = p.proowner THEN '' ELSE ' by another' END \
               || CASE WHEN x.is_grantable THEN ' with grant option' ELSE '' END, \
           CASE WHEN x.grantee = 0 THEN 'PUBLIC' ELSE pg_get_userbyid(x.grantee)::text END \
      FROM closed p CROSS JOIN LATERAL aclexplode(coalesce(p.proacl, acldefault('f', p.proowner))) x \
    UNION ALL \
    SELECT 'public acl', p.name, \
           x.privilege_type || CASE WHEN x.grantor = p.owner THEN '' ELSE ' by another' END \
               || CASE WHEN x.is_grantable THEN ' with grant option' ELSE '' END, \
           CASE WHEN x.grantee = 0 THEN 'PUBLIC' ELSE pg_get_userbyid(x.grantee)::text END \
      FROM pub p CROSS JOIN LATERAL aclexplode(p.acl) x \
    UNION ALL \
    SELECT 'public acl', p.name, 'built-in default', NULL FROM pub p WHERE p.acl IS NULL \
    UNION ALL \
    SELECT 'setting', s.key, '', s.value FROM platform.settings s \
     WHERE s.key IN ('owner_role', 'app_rw_role', 'audit_admin_role', 'reader_role', \
                     'investigator_role')";

/// The digest of a tenant database's [`GRANT_STATE`], its principals named by role.
async fn read_grant_state<C: GenericClient>(
    client: &C,
    names: &TenantNames,
) -> Result<String, EngineError> {
    let rows = client.query(GRANT_STATE, &[]).await?;
    Ok(SchemaSnapshot::of(names, raw_objects(&rows)).fingerprint)
}

/// Every object of the tenant's schemas (`$1`) a fingerprint covers (each catalog read once, in
/// the CTEs, however many kinds of line it feeds; columns and indexes looked up per relation of
/// those schemas, not joined against every relation's; views such as `pg_indexes` and
/// `pg_roles` left out, since each is more to plan in every new session and reads more than
/// this needs; roles looked up by oid or by the tenant's names, never scanned: a server holds
/// seven per tenant; relations and routines taken from their oid index above 16383
/// (`FirstNormalObjectId`: everything a migration creates is above it), so a session never reads
/// the pages of the ~3,000 built-in functions; grantees named by `pg_get_userbyid`, a cache
/// lookup, not a subquery per ACL entry, and PUBLIC by its oid 0; an ACL entry of a role that
/// no longer exists, which only a damaged catalog holds, reads `unknown (OID=n)`): (kind,
/// name, detail,
/// principal): columns, indexes, triggers (definition and enabled state), routines, owners,
/// row-level security policies; permissions (the ACL entries of tables, columns, routines and
/// the schemas themselves); and the tenant's principals (`$2`): their attributes and role
/// memberships. Whether a login may log in is left out: rotation switches it on purpose. Routines are named with their argument types and hashed by definition.
const SCHEMA_OBJECTS: &str = "\
    WITH ns AS MATERIALIZED ( \
        SELECT oid, nspname, nspacl, nspowner FROM pg_namespace WHERE nspname = ANY($1)), \
    rels AS MATERIALIZED ( \
        SELECT c.oid, c.relname, c.relkind, c.relacl, c.relowner, ns.nspname \
          FROM pg_class c JOIN ns ON ns.oid = c.relnamespace WHERE c.oid >= 16384), \
    procs AS MATERIALIZED ( \
        SELECT p.oid, p.prokind, p.proacl, p.proowner, \
               ns.nspname || '.' || p.proname || '(' || pg_get_function_identity_arguments(p.oid) || ')' AS name \
          FROM pg_proc p JOIN ns ON ns.oid = p.pronamespace WHERE p.oid >= 16384), \
    attrs AS MATERIALIZED ( \
        SELECT r.nspname || '.' || r.relname || '.' || a.attname AS name, r.relkind, a.attnum, \
               a.attisdropped, a.atttypid, a.atttypmod, a.attnotnull, a.attacl \
          FROM rels r CROSS JOIN LATERAL ( \
            SELECT * FROM pg_attribute a WHERE a.attrelid = r.oid OFFSET 0) a), \
    tenant_roles AS MATERIALIZED (SELECT oid FROM pg_authid WHERE rolname = ANY($2)) \
    SELECT 'column', a.name, \
           format_type(a.atttypid, a.atttypmod) || CASE WHEN a.attnotnull THEN ' not null' ELSE '' END, \
           NULL::text \
      FROM attrs a WHERE a.relkind IN ('r', 'p', 'v') AND a.attnum > 0 AND NOT a.attisdropped \
    UNION ALL \
    SELECT 'index', r.nspname || '.' || i.relname, md5(pg_get_indexdef(i.oid)), NULL \
      FROM rels r JOIN pg_index x ON x.indrelid = r.oid JOIN pg_class i ON i.oid = x.indexrelid \
     WHERE r.relkind IN ('r', 'm', 'p') AND i.relkind IN ('i', 'I') \
    UNION ALL \
    SELECT 'routine', p.name, md5(pg_get_functiondef(p.oid)), NULL \
      FROM procs p WHERE p.prokind IN ('f', 'p') \
    UNION ALL \
    SELECT 'trigger', r.nspname || '.' || r.relname || '.' || t.tgname, \
           md5(pg_get_triggerdef(t.oid)) || ' ' || t.tgenabled::text, NULL \
      FROM pg_trigger t JOIN rels r ON r.oid = t.tgrelid WHERE NOT t.tgisinternal \
    UNION ALL \
    SELECT 'grant', r.nspname || '.' || r.relname, x.privilege_type, CASE WHEN x.grantee = 0 THEN 'PUBLIC' ELSE pg_get_userbyid(x.grantee)::text END \
      FROM rels r CROSS JOIN LATERAL aclexplode(r.relacl) x \
     WHERE r.relacl IS NOT NULL \
    UNION ALL \
    SELECT 'grant', p.name, x.privilege_type, CASE WHEN x.grantee = 0 THEN 'PUBLIC' ELSE pg_get_userbyid(x.grantee)::text END \
      FROM procs p CROSS JOIN LATERAL aclexplode(p.proacl) x \
     WHERE p.proacl IS NOT NULL \
    UNION ALL \
    SELECT 'grant', 'schema ' || n.nspname, x.privilege_type, CASE WHEN x.grantee = 0 THEN 'PUBLIC' ELSE pg_get_userbyid(x.grantee)::text END \
      FROM ns n CROSS JOIN LATERAL aclexplode(n.nspacl) x \
     WHERE n.nspacl IS NOT NULL \
    UNION ALL \
    SELECT 'grant', a.name, x.privilege_type, CASE WHEN x.grantee = 0 THEN 'PUBLIC' ELSE pg_get_userbyid(x.grantee)::text END \
      FROM attrs a CROSS JOIN LATERAL aclexplode(a.attacl) x \
     WHERE a.attacl IS NOT NULL \
    UNION ALL \
    SELECT 'owner', r.nspname || '.' || r.relname, r.relkind::text, pg_get_userbyid(r.relowner) \
      FROM rels r \
    UNION ALL \
    SELECT 'owner', 'schema ' || n.nspname, 'schema', pg_get_userbyid(n.nspowner) FROM ns n \
    UNION ALL \
    SELECT 'owner', p.name, 'routine', pg_get_userbyid(p.proowner) FROM procs p \
    UNION ALL \
    SELECT 'policy', r.nspname || '.' || r.relname || '.' || pol.polname, \
           md5(coalesce(pg_get_expr(pol.polqual, pol.polrelid), '') || '|' \
               || coalesce(pg_get_expr(pol.polwithcheck, pol.polrelid), '') || '|' \
               || pol.polcmd::text || '|' || pol.polpermissive::text), NULL \
      FROM pg_policy pol JOIN rels r ON r.oid = pol.polrelid \
    UNION ALL \
    SELECT 'role', r.rolname, concat_ws(',', 'super=' || r.rolsuper, 'createrole=' || r.rolcreaterole, \
           'createdb=' || r.rolcreatedb, 'bypassrls=' || r.rolbypassrls, \
           'inherit=' || r.rolinherit, 'replication=' || r.rolreplication), NULL \
      FROM pg_authid r WHERE r.rolname = ANY($2) \
    UNION ALL \
    SELECT 'membership', g.rolname, 'member', u.rolname \
      FROM pg_auth_members m JOIN pg_authid g ON g.oid = m.roleid \
      JOIN pg_authid u ON u.oid = m.member \
     WHERE m.roleid = ANY(ARRAY(SELECT oid FROM tenant_roles)) \
        OR m.member = ANY(ARRAY(SELECT oid FROM tenant_roles))";
