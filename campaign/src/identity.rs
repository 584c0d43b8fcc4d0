//! Who is calling the campaign API and what they may see: organisations, users, roles,
//! API keys, console sessions, and the [`Caller`] extractor.
//!
//! # Organisations
//! A tree (`orgs`): one root (`parent_id` NULL, level `province`), cities below it, counties
//! below cities; a child's level is always one step below its parent's. A caller sees and
//! acts on its own organisation and every organisation below it ([`visible_orgs`]); the
//! approval chains walk the other way ([`ancestry`]).
//!
//! Every campaign object (campaign, activity, task, segment, bulk send) carries an `org_id`
//! set from the caller at creation; children inherit their parent's. A row whose `org_id`
//! is NULL (written before schema version 5, or by the local `sluice campaign` CLI, which
//! has no caller) belongs to the root organisation: [`Scope`] spells that rule once
//! (`COALESCE(org_id, root)`) and every check and listing goes through it. Another
//! tenant's id answers exactly like an unknown id ([`CampaignError::NotFound`], HTTP 404).
//!
//! # Roles and what they allow ([`Role::allows`])
//!
//! | action | planner | approver | operator | auditor | admin |
//! |---|---|---|---|---|---|
//! | [`Action::Read`]: list, show, reports, count, history | ✓ | ✓ | ✓ | ✓ | ✓ |
//! | [`Action::Plan`]: create/edit campaigns, activities, tasks, segments, bulk sends; submit, revise, schedule, cancel | ✓ | | | | ✓ |
//! | [`Action::Approve`]: approve / reject a submitted task | | ✓ | | | ✓ |
//! | [`Action::Launch`]: launch a scheduled bulk send | ✓ | | ✓ | | ✓ |
//! | [`Action::Operate`]: pause / resume / complete / cancel running work, channels, public rules, emergency stop, order import | | | ✓ | | ✓ |
//! | [`Action::Admin`]: organisations, users, other users' keys | | | | | ✓ |
//!
//! Every user may create and revoke API keys for themselves. Nobody approves a task they
//! submitted themselves (checked in [`crate::lifecycle::transition_by`]).
//!
//! # Credentials
//! `Authorization: Bearer <secret>` where the secret is either
//! - an API key: 32 random bytes shown once as `sk_` + 64 hex digits, bound to a user,
//!   revocable (`api_keys.revoked_at`); or
//! - a console session token from `POST /login`: 32 random bytes as `ss_` + hex, valid
//!   [`SESSION_TTL_SECS`] (12 h) or until `POST /logout`.
//!
//! Only the SHA-256 (hex) of a secret is stored. A presented secret is hashed, looked up by
//! that hash through the UNIQUE index, and the stored hash is then compared with the
//! computed one in constant time (`subtle`). Passwords are argon2id PHC strings; a login for
//! an unknown user still runs one argon2 verification, so the answer (401) and its timing
//! do not say whether the user exists. Secrets are never logged.

use std::fmt;
use std::str::FromStr;
use std::sync::OnceLock;

use argon2::Argon2;
use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use axum::extract::FromRequestParts;
use axum::http::header;
use axum::http::request::Parts;
use rusqlite::{Connection, OptionalExtension, params};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::error::{CampaignError, Result};
use crate::feedback::Shared;

/// How long a console session lives (12 hours).
pub const SESSION_TTL_SECS: i64 = 12 * 3600;
/// Prefix of an API key's plaintext.
pub const KEY_PREFIX: &str = "sk_";
/// Prefix of a session token's plaintext.
pub const SESSION_PREFIX: &str = "ss_";

/// A user's role (a user may hold several).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Planner,
    Approver,
    Operator,
    Auditor,
    Admin,
}

impl Role {
    /// Every role.
    pub const ALL: [Self; 5] = [
        Self::Planner,
        Self::Approver,
        Self::Operator,
        Self::Auditor,
        Self::Admin,
    ];

    /// Stable lowercase name (stored in `users.roles`, used by the API).
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Planner => "planner",
            Self::Approver => "approver",
            Self::Operator => "operator",
            Self::Auditor => "auditor",
            Self::Admin => "admin",
        }
    }

    /// The permission matrix of the module doc.
    pub const fn allows(self, action: Action) -> bool {
        use Action as A;
        match self {
            Self::Admin => true,
            Self::Planner => matches!(action, A::Read | A::Plan | A::Launch),
            Self::Approver => matches!(action, A::Read | A::Approve),
            Self::Operator => matches!(action, A::Read | A::Launch | A::Operate),
            Self::Auditor => matches!(action, A::Read),
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = CampaignError;
    fn from_str(s: &str) -> Result<Self> {
        Self::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| CampaignError::invalid("roles", format!("unknown role {s:?}")))
    }
}

/// What a request wants to do (the rows of the permission matrix).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    Read,
    Plan,
    Approve,
    Launch,
    Operate,
    Admin,
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Read => "read",
            Self::Plan => "plan",
            Self::Approve => "approve",
            Self::Launch => "launch",
            Self::Operate => "operate",
            Self::Admin => "admin",
        })
    }
}

/// Level of an organisation in the tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OrgLevel {
    Province,
    City,
    County,
}

impl OrgLevel {
    /// Stored name.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Province => "province",
            Self::City => "city",
            Self::County => "county",
        }
    }

    /// The level a child of this level has (`None` below a county).
    pub const fn child(self) -> Option<Self> {
        match self {
            Self::Province => Some(Self::City),
            Self::City => Some(Self::County),
            Self::County => None,
        }
    }
}

impl FromStr for OrgLevel {
    type Err = CampaignError;
    fn from_str(s: &str) -> Result<Self> {
        [Self::Province, Self::City, Self::County]
            .into_iter()
            .find(|l| l.as_str() == s)
            .ok_or_else(|| CampaignError::invalid("level", format!("unknown level {s:?}")))
    }
}

/// The authenticated caller of one request.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Caller {
    pub user_id: i64,
    pub user: String,
    pub org_id: i64,
    pub roles: Vec<Role>,
    /// The caller's organisation and every one below it (resolved once per request).
    pub visible_orgs: Vec<i64>,
}

impl Caller {
    /// Whether any of the caller's roles allows `action`.
    pub fn may(&self, action: Action) -> bool {
        self.roles.iter().any(|r| r.allows(action))
    }

    /// `Ok` when some role allows `action`, else [`CampaignError::Forbidden`] (HTTP 403).
    ///
    /// # Errors
    /// [`CampaignError::Forbidden`].
    pub fn require(&self, action: Action) -> Result<()> {
        if self.may(action) {
            Ok(())
        } else {
            Err(CampaignError::Forbidden {
                reason: format!("role with {action} permission required"),
            })
        }
    }

    /// `Ok` when some role allows any of `actions`.
    ///
    /// # Errors
    /// [`CampaignError::Forbidden`] naming the first action.
    pub fn require_any(&self, actions: &[Action]) -> Result<()> {
        match actions.iter().find(|a| self.may(**a)) {
            Some(_) => Ok(()),
            None => self.require(actions.first().copied().unwrap_or(Action::Admin)),
        }
    }

    /// The caller's visibility as an SQL predicate.
    pub fn scope(&self) -> Scope {
        Scope {
            visible: serde_json::Value::from(self.visible_orgs.clone()).to_string(),
        }
    }

    /// Whether an organisation id is the caller's or below it.
    pub fn sees_org(&self, org: i64) -> bool {
        self.visible_orgs.contains(&org)
    }
}

/// The visibility predicate of a caller, for SQL over a table with an `org_id` column.
///
/// `sql("t")` is `COALESCE(t.org_id, <root>) IN (<visible orgs>)` with the named parameter
/// `:scope_visible` (bind [`Scope::visible`]); NULL rows belong to the root organisation.
#[derive(Debug, Clone)]
pub struct Scope {
    /// JSON array of the visible organisation ids.
    pub visible: String,
}

impl Scope {
    /// The predicate over table alias `alias`.
    pub fn sql(alias: &str) -> String {
        format!(
            "COALESCE({alias}.org_id, (SELECT id FROM orgs WHERE parent_id IS NULL)) \
             IN (SELECT value FROM json_each(:scope_visible))"
        )
    }
}

/// The objects that belong to an organisation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Object {
    Campaign,
    Activity,
    Task,
    Segment,
    Bulk,
}

impl Object {
    /// Its table.
    pub const fn table(self) -> &'static str {
        match self {
            Self::Campaign => "campaigns",
            Self::Activity => "activities",
            Self::Task => "tasks",
            Self::Segment => "segments",
            Self::Bulk => "bulk_sends",
        }
    }

    /// Its name in a not-found error (the same words as for an unknown id).
    pub const fn what(self) -> &'static str {
        match self {
            Self::Campaign => "campaign",
            Self::Activity => "activity",
            Self::Task => "task",
            Self::Segment => "segment",
            Self::Bulk => "bulk send",
        }
    }
}

/// The organisation of object `id` when `caller` may see it; [`CampaignError::NotFound`]
/// both when it does not exist and when it belongs to another tenant.
///
/// # Errors
/// `NotFound`; SQLite failure.
pub fn ensure_visible(conn: &Connection, caller: &Caller, obj: Object, id: i64) -> Result<i64> {
    let sql = format!(
        "SELECT COALESCE(t.org_id, (SELECT id FROM orgs WHERE parent_id IS NULL)) FROM {} t
         WHERE t.id = :id AND {}",
        obj.table(),
        Scope::sql("t")
    );
    let scope = caller.scope();
    let org: Option<Option<i64>> = conn
        .query_row(
            &sql,
            rusqlite::named_params! {":id": id, ":scope_visible": scope.visible},
            |r| r.get(0),
        )
        .optional()?;
    match org {
        Some(Some(org)) => Ok(org),
        _ => Err(CampaignError::NotFound {
            what: obj.what(),
            id,
        }),
    }
}

/// Records who created object `id`, in which organisation, and when (same statement also
/// sets `updated_by/updated_at`). Call in the transaction that created the row.
///
/// # Errors
/// SQLite failure.
pub fn stamp_created(
    conn: &Connection,
    obj: Object,
    id: i64,
    org: i64,
    user: i64,
    now: i64,
) -> Result<()> {
    conn.execute(
        &format!(
            "UPDATE {} SET org_id = ?1, created_by = ?2, updated_by = ?2, updated_at = ?3 WHERE id = ?4",
            obj.table()
        ),
        params![org, user, now, id],
    )?;
    Ok(())
}

/// Records who last changed object `id` and when.
///
/// # Errors
/// SQLite failure.
pub fn stamp_updated(conn: &Connection, obj: Object, id: i64, user: i64, now: i64) -> Result<()> {
    conn.execute(
        &format!(
            "UPDATE {} SET updated_by = ?1, updated_at = ?2 WHERE id = ?3",
            obj.table()
        ),
        params![user, now, id],
    )?;
    Ok(())
}

/// `org` and every organisation below it.
///
/// # Errors
/// SQLite failure.
pub fn visible_orgs(conn: &Connection, org: i64) -> Result<Vec<i64>> {
    let mut st = conn.prepare_cached(
        "WITH RECURSIVE sub(id) AS (SELECT id FROM orgs WHERE id = ?1
           UNION ALL SELECT o.id FROM orgs o JOIN sub ON o.parent_id = sub.id)
         SELECT id FROM sub ORDER BY id",
    )?;
    let ids = st.query_map([org], |r| r.get(0))?;
    Ok(ids.collect::<Result<_, _>>()?)
}

/// `org`, its parent, … up to the root (in that order).
///
/// # Errors
/// SQLite failure.
pub fn ancestry(conn: &Connection, org: i64) -> Result<Vec<i64>> {
    let mut st = conn.prepare_cached(
        "WITH RECURSIVE up(id, parent, depth) AS (SELECT id, parent_id, 0 FROM orgs WHERE id = ?1
           UNION ALL SELECT o.id, o.parent_id, up.depth + 1 FROM orgs o JOIN up ON o.id = up.parent)
         SELECT id FROM up ORDER BY depth",
    )?;
    let ids = st.query_map([org], |r| r.get(0))?;
    Ok(ids.collect::<Result<_, _>>()?)
}

/// The root organisation, if bootstrap has run.
///
/// # Errors
/// SQLite failure.
pub fn root_org(conn: &Connection) -> Result<Option<i64>> {
    Ok(conn
        .query_row("SELECT id FROM orgs WHERE parent_id IS NULL", [], |r| {
            r.get(0)
        })
        .optional()?)
}

/// `Ok` when `caller` belongs to the root organisation: province-wide data (subscribers,
/// order files) is changed from there only. `reason` is the 403's text.
///
/// # Errors
/// [`CampaignError::Forbidden`] for any other organisation; SQLite failure.
pub fn require_root(conn: &Connection, caller: &Caller, reason: &str) -> Result<()> {
    if root_org(conn)? == Some(caller.org_id) {
        Ok(())
    } else {
        Err(CampaignError::Forbidden {
            reason: reason.to_owned(),
        })
    }
}

/// One organisation.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Org {
    pub id: i64,
    pub parent: Option<i64>,
    pub name: String,
    pub level: OrgLevel,
}

/// Creates an organisation. `parent` None creates the root (province), allowed only once;
/// otherwise `level` must be the parent's child level.
///
/// # Errors
/// [`CampaignError::Invalid`] for a second root, a wrong level or a taken name;
/// [`CampaignError::NotFound`] for an unknown parent.
pub fn create_org(
    conn: &Connection,
    name: &str,
    parent: Option<i64>,
    level: OrgLevel,
) -> Result<i64> {
    let name = name.trim();
    if name.is_empty() {
        return Err(CampaignError::invalid("name", "empty"));
    }
    match parent {
        None => {
            if root_org(conn)?.is_some() {
                return Err(CampaignError::invalid("parent", "the root already exists"));
            }
            if level != OrgLevel::Province {
                return Err(CampaignError::invalid("level", "the root is a province"));
            }
        }
        Some(p) => {
            let plevel: OrgLevel = conn
                .query_row("SELECT level FROM orgs WHERE id = ?1", [p], |r| {
                    r.get::<_, String>(0)
                })
                .optional()?
                .ok_or(CampaignError::NotFound { what: "org", id: p })?
                .parse()?;
            if plevel.child() != Some(level) {
                return Err(CampaignError::invalid(
                    "level",
                    format!("a {} cannot hold a {}", plevel.as_str(), level.as_str()),
                ));
            }
        }
    }
    if name_taken(conn, "orgs", name)? {
        return Err(CampaignError::invalid("name", format!("{name:?} is taken")));
    }
    conn.execute(
        "INSERT INTO orgs (parent_id, name, level) VALUES (?1, ?2, ?3)",
        params![parent, name, level.as_str()],
    )?;
    Ok(conn.last_insert_rowid())
}

fn name_taken(conn: &Connection, table: &str, name: &str) -> Result<bool> {
    Ok(conn
        .query_row(
            &format!("SELECT 1 FROM {table} WHERE name = ?1"),
            [name],
            |_| Ok(()),
        )
        .optional()?
        .is_some())
}

/// The organisations in `orgs` (a caller's visible set), by id.
///
/// # Errors
/// SQLite failure.
pub fn list_orgs(conn: &Connection, orgs: &[i64]) -> Result<Vec<Org>> {
    let mut st = conn.prepare(
        "SELECT id, parent_id, name, level FROM orgs
         WHERE id IN (SELECT value FROM json_each(?1)) ORDER BY id",
    )?;
    let rows = st.query_map([serde_json::Value::from(orgs.to_vec()).to_string()], |r| {
        Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get::<_, String>(3)?))
    })?;
    let mut out = Vec::new();
    for r in rows {
        let (id, parent, name, level) = r?;
        out.push(Org {
            id,
            parent,
            name,
            level: level.parse()?,
        });
    }
    Ok(out)
}

/// One user (never with its password hash).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct User {
    pub id: i64,
    pub org: i64,
    pub name: String,
    pub roles: Vec<Role>,
    pub disabled: bool,
    pub has_password: bool,
    pub created_at: i64,
    pub created_by: Option<i64>,
}

fn parse_roles(s: &str) -> Result<Vec<Role>> {
    s.split(',')
        .filter(|r| !r.is_empty())
        .map(str::parse)
        .collect()
}

fn roles_text(roles: &[Role]) -> String {
    let mut v: Vec<&str> = Role::ALL
        .into_iter()
        .filter(|r| roles.contains(r))
        .map(Role::as_str)
        .collect();
    v.dedup();
    v.join(",")
}

/// Creates a user in `org` (password optional: API-key-only users have none).
///
/// # Errors
/// [`CampaignError::Invalid`] for an empty or taken name or no role;
/// [`CampaignError::NotFound`] for an unknown org.
pub fn create_user(
    conn: &Connection,
    name: &str,
    org: i64,
    roles: &[Role],
    password: Option<&str>,
    created_by: Option<i64>,
    now: i64,
) -> Result<i64> {
    let name = name.trim();
    if name.is_empty() || name.contains(char::is_whitespace) {
        return Err(CampaignError::invalid("name", "empty or has spaces"));
    }
    if roles.is_empty() {
        return Err(CampaignError::invalid("roles", "at least one role"));
    }
    conn.query_row("SELECT 1 FROM orgs WHERE id = ?1", [org], |_| Ok(()))
        .optional()?
        .ok_or(CampaignError::NotFound {
            what: "org",
            id: org,
        })?;
    if name_taken(conn, "users", name)? {
        return Err(CampaignError::invalid("name", format!("{name:?} is taken")));
    }
    let hash = password.map(hash_password).transpose()?;
    conn.execute(
        "INSERT INTO users (org_id, name, roles, password_hash, disabled, created_at, created_by)
         VALUES (?1, ?2, ?3, ?4, 0, ?5, ?6)",
        params![org, name, roles_text(roles), hash, now, created_by],
    )?;
    Ok(conn.last_insert_rowid())
}

const USER_COLS: &str =
    "id, org_id, name, roles, disabled, password_hash IS NOT NULL, created_at, created_by";

fn user_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<(User, String)> {
    Ok((
        User {
            id: r.get(0)?,
            org: r.get(1)?,
            name: r.get(2)?,
            roles: Vec::new(),
            disabled: r.get::<_, i64>(4)? != 0,
            has_password: r.get(5)?,
            created_at: r.get(6)?,
            created_by: r.get(7)?,
        },
        r.get(3)?,
    ))
}

/// A user by id.
///
/// # Errors
/// [`CampaignError::NotFound`]; SQLite failure.
pub fn user(conn: &Connection, id: i64) -> Result<User> {
    let (mut u, roles) = conn
        .query_row(
            &format!("SELECT {USER_COLS} FROM users WHERE id = ?1"),
            [id],
            user_row,
        )
        .optional()?
        .ok_or(CampaignError::NotFound { what: "user", id })?;
    u.roles = parse_roles(&roles)?;
    Ok(u)
}

/// The users of the organisations in `orgs`, by id.
///
/// # Errors
/// SQLite failure.
pub fn list_users(conn: &Connection, orgs: &[i64]) -> Result<Vec<User>> {
    let mut st = conn.prepare(&format!(
        "SELECT {USER_COLS} FROM users WHERE org_id IN (SELECT value FROM json_each(?1)) ORDER BY id"
    ))?;
    let rows = st.query_map(
        [serde_json::Value::from(orgs.to_vec()).to_string()],
        user_row,
    )?;
    let mut out = Vec::new();
    for r in rows {
        let (mut u, roles) = r?;
        u.roles = parse_roles(&roles)?;
        out.push(u);
    }
    Ok(out)
}

/// Disables a user: their keys and sessions stop working at once (checked on every request).
///
/// # Errors
/// SQLite failure.
pub fn disable_user(conn: &Connection, id: i64) -> Result<()> {
    conn.execute("UPDATE users SET disabled = 1 WHERE id = ?1", [id])?;
    Ok(())
}

/// A new API key: its id and the plaintext, which is shown once and never stored.
#[derive(Debug, Clone, serde::Serialize)]
pub struct NewKey {
    pub id: i64,
    pub key: String,
}

/// Creates an API key for `user`. `plaintext` None mints 32 random bytes; `Some` stores the
/// given key (the development bootstrap's embedded key).
///
/// # Errors
/// SQLite failure (also for a key that already exists); OS randomness failure.
pub fn create_key(
    conn: &Connection,
    user: i64,
    label: &str,
    plaintext: Option<&str>,
    now: i64,
) -> Result<NewKey> {
    let key = match plaintext {
        Some(k) => k.to_owned(),
        None => mint(KEY_PREFIX)?,
    };
    conn.execute(
        "INSERT INTO api_keys (user_id, sha256_hex, label, created_at) VALUES (?1, ?2, ?3, ?4)",
        params![user, sha256_hex(&key), label, now],
    )?;
    Ok(NewKey {
        id: conn.last_insert_rowid(),
        key,
    })
}

/// The user an API key belongs to, if the key exists.
///
/// # Errors
/// SQLite failure.
pub fn key_owner(conn: &Connection, key_id: i64) -> Result<Option<i64>> {
    Ok(conn
        .query_row(
            "SELECT user_id FROM api_keys WHERE id = ?1",
            [key_id],
            |r| r.get(0),
        )
        .optional()?)
}

/// Revokes an API key (idempotent; the first revocation time is kept).
///
/// # Errors
/// SQLite failure.
pub fn revoke_key(conn: &Connection, key_id: i64, now: i64) -> Result<()> {
    conn.execute(
        "UPDATE api_keys SET revoked_at = COALESCE(revoked_at, ?1) WHERE id = ?2",
        params![now, key_id],
    )?;
    Ok(())
}

/// A console session: the token (shown once) and its expiry (Unix seconds).
#[derive(Debug, Clone, serde::Serialize)]
pub struct Session {
    pub token: String,
    pub expires_at: i64,
}

/// Verifies `password` for `user` and opens a session. `None` for an unknown, disabled or
/// password-less user and for a wrong password alike (one argon2 verification either way).
///
/// # Errors
/// SQLite failure; OS randomness failure.
pub fn login(conn: &Connection, user: &str, password: &str, now: i64) -> Result<Option<Session>> {
    let row: Option<(i64, Option<String>, bool)> = conn
        .query_row(
            "SELECT id, password_hash, disabled FROM users WHERE name = ?1",
            [user],
            |r| Ok((r.get(0)?, r.get(1)?, r.get::<_, i64>(2)? != 0)),
        )
        .optional()?;
    let (id, hash, ok_user) = match row {
        Some((id, Some(h), disabled)) => (id, h, !disabled),
        Some((id, None, _)) => (id, dummy_hash().to_owned(), false),
        None => (0, dummy_hash().to_owned(), false),
    };
    let verified = verify_password(password, &hash);
    if !(verified && ok_user) {
        return Ok(None);
    }
    let token = mint(SESSION_PREFIX)?;
    let expires_at = now + SESSION_TTL_SECS;
    conn.execute(
        "INSERT INTO sessions (user_id, sha256_hex, created_at, expires_at) VALUES (?1, ?2, ?3, ?4)",
        params![id, sha256_hex(&token), now, expires_at],
    )?;
    Ok(Some(Session { token, expires_at }))
}

/// Ends the session whose token is `token` (a no-op for an API key or unknown token).
///
/// # Errors
/// SQLite failure.
pub fn logout(conn: &Connection, token: &str, now: i64) -> Result<()> {
    conn.execute(
        "UPDATE sessions SET ended_at = ?1 WHERE sha256_hex = ?2 AND ended_at IS NULL",
        params![now, sha256_hex(token)],
    )?;
    Ok(())
}

/// Resolves a bearer secret (API key or session token) to its caller at `now`.
///
/// # Errors
/// [`CampaignError::Unauthenticated`] for an unknown, revoked or expired secret and for a
/// disabled user; SQLite failure.
pub fn resolve(conn: &Connection, secret: &str, now: i64) -> Result<Caller> {
    let hash = sha256_hex(secret);
    let found: Option<(String, i64)> = if secret.starts_with(SESSION_PREFIX) {
        conn.query_row(
            "SELECT sha256_hex, user_id FROM sessions
             WHERE sha256_hex = ?1 AND ended_at IS NULL AND expires_at > ?2",
            params![hash, now],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?
    } else {
        conn.query_row(
            "SELECT sha256_hex, user_id FROM api_keys WHERE sha256_hex = ?1 AND revoked_at IS NULL",
            [&hash],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?
    };
    let Some((stored, user_id)) = found else {
        return Err(CampaignError::Unauthenticated);
    };
    if !bool::from(stored.as_bytes().ct_eq(hash.as_bytes())) {
        return Err(CampaignError::Unauthenticated);
    }
    let u = user(conn, user_id)?;
    if u.disabled {
        return Err(CampaignError::Unauthenticated);
    }
    Ok(Caller {
        user_id: u.id,
        user: u.name,
        org_id: u.org,
        roles: u.roles,
        visible_orgs: visible_orgs(conn, u.org)?,
    })
}

/// Whether any user exists (an API with none answers 401 to everything).
///
/// # Errors
/// SQLite failure.
pub fn has_users(conn: &Connection) -> Result<bool> {
    Ok(conn
        .query_row("SELECT 1 FROM users LIMIT 1", [], |_| Ok(()))
        .optional()?
        .is_some())
}

/// What [`bootstrap`] created.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Bootstrapped {
    pub org: i64,
    pub user: i64,
    /// The admin's API key, shown once.
    pub key: String,
}

/// Creates the root organisation (unless one exists) and an admin user with an API key,
/// when the database has no user at all; `None` (nothing changed) otherwise.
///
/// `key` None mints a fresh key; `Some` installs that plaintext (the embedded development
/// configuration's key, development only).
///
/// # Errors
/// Validation and SQLite failures.
pub fn bootstrap(
    conn: &mut Connection,
    org: &str,
    admin: &str,
    password: Option<&str>,
    key: Option<&str>,
    now: i64,
) -> Result<Option<Bootstrapped>> {
    let tx = conn.transaction()?;
    if has_users(&tx)? {
        return Ok(None);
    }
    let org = match root_org(&tx)? {
        Some(o) => o,
        None => create_org(&tx, org, None, OrgLevel::Province)?,
    };
    let user = create_user(&tx, admin, org, &[Role::Admin], password, None, now)?;
    let key = create_key(&tx, user, "bootstrap", key, now)?;
    tx.commit()?;
    Ok(Some(Bootstrapped {
        org,
        user,
        key: key.key,
    }))
}

/// Lowercase hex SHA-256 of a secret (the only form in which secrets are stored).
pub fn sha256_hex(secret: &str) -> String {
    hex(&Sha256::digest(secret.as_bytes()))
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// `prefix` + 32 bytes from the OS random source, in hex.
fn mint(prefix: &str) -> Result<String> {
    let mut buf = [0u8; 32];
    getrandom::fill(&mut buf)
        .map_err(|e| CampaignError::invalid("secret", format!("no OS randomness: {e}")))?;
    Ok(format!("{prefix}{}", hex(&buf)))
}

fn hash_password(password: &str) -> Result<String> {
    if password.len() < 8 {
        return Err(CampaignError::invalid("password", "at least 8 characters"));
    }
    Argon2::default()
        .hash_password(password.as_bytes())
        .map(|h| h.to_string())
        .map_err(|e| CampaignError::invalid("password", e.to_string()))
}

fn verify_password(password: &str, phc: &str) -> bool {
    PasswordHash::new(phc).is_ok_and(|h| {
        Argon2::default()
            .verify_password(password.as_bytes(), &h)
            .is_ok()
    })
}

/// A valid argon2 hash of a random password, verified against when the user is unknown so
/// a failed login costs the same either way.
fn dummy_hash() -> &'static str {
    static DUMMY: OnceLock<String> = OnceLock::new();
    DUMMY.get_or_init(|| {
        let pw = mint("").unwrap_or_else(|_| "x".repeat(64));
        hash_password(&pw).unwrap_or_default()
    })
}

/// The bearer secret of a request, if it has one.
pub fn bearer(headers: &axum::http::HeaderMap) -> Option<&str> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, secret) = v.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| secret.trim())
        .filter(|s| !s.is_empty())
}

/// Router states that can resolve callers (they hold the campaign service).
pub trait IdentityState {
    /// The service whose store holds users, keys and sessions.
    fn campaigns(&self) -> &Shared;
}

impl<S: IdentityState + Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = crate::api::ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &S,
    ) -> std::result::Result<Self, Self::Rejection> {
        if let Some(c) = parts.extensions.get::<Self>() {
            return Ok(c.clone());
        }
        let secret = bearer(&parts.headers).ok_or(CampaignError::Unauthenticated)?;
        let caller = {
            let c = state
                .campaigns()
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            resolve(&c.conn, secret, jiff::Timestamp::now().as_second())?
        };
        parts.extensions.insert(caller.clone());
        Ok(caller)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::open_in_memory;

    fn tree(c: &mut Connection) -> (i64, i64, i64, i64) {
        let b = bootstrap(c, "Province", "root", None, None, 0)
            .unwrap()
            .unwrap();
        let city_a = create_org(c, "City A", Some(b.org), OrgLevel::City).unwrap();
        let city_b = create_org(c, "City B", Some(b.org), OrgLevel::City).unwrap();
        let county = create_org(c, "County A1", Some(city_a), OrgLevel::County).unwrap();
        (b.org, city_a, city_b, county)
    }

    #[test]
    fn visibility_goes_down_and_ancestry_up() {
        let mut c = open_in_memory().unwrap();
        let (p, a, b, a1) = tree(&mut c);
        assert_eq!(visible_orgs(&c, p).unwrap(), vec![p, a, b, a1]);
        assert_eq!(visible_orgs(&c, a).unwrap(), vec![a, a1]);
        assert_eq!(visible_orgs(&c, b).unwrap(), vec![b]);
        assert_eq!(ancestry(&c, a1).unwrap(), vec![a1, a, p]);
        assert_eq!(ancestry(&c, p).unwrap(), vec![p]);
    }

    #[test]
    fn org_tree_rules() {
        let mut c = open_in_memory().unwrap();
        let (p, a, _, a1) = tree(&mut c);
        assert!(create_org(&c, "Another root", None, OrgLevel::Province).is_err());
        assert!(create_org(&c, "Bad", Some(p), OrgLevel::County).is_err());
        assert!(create_org(&c, "Bad2", Some(a1), OrgLevel::County).is_err());
        assert!(create_org(&c, "City A", Some(p), OrgLevel::City).is_err());
        assert!(matches!(
            create_org(&c, "X", Some(999), OrgLevel::City),
            Err(CampaignError::NotFound { what: "org", .. })
        ));
        assert!(create_org(&c, "County A2", Some(a), OrgLevel::County).is_ok());
    }

    #[test]
    fn keys_resolve_until_revoked_and_only_hashes_are_stored() {
        let mut c = open_in_memory().unwrap();
        let (_, a, _, _) = tree(&mut c);
        let u = create_user(&c, "alice", a, &[Role::Planner], None, None, 1).unwrap();
        let k = create_key(&c, u, "ci", None, 1).unwrap();
        assert!(k.key.starts_with(KEY_PREFIX) && k.key.len() == 3 + 64);
        let stored: String = c
            .query_row(
                "SELECT sha256_hex FROM api_keys WHERE id = ?1",
                [k.id],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(stored, sha256_hex(&k.key));
        assert_ne!(stored, k.key);
        let who = resolve(&c, &k.key, 2).unwrap();
        assert_eq!((who.user.as_str(), who.org_id), ("alice", a));
        assert!(who.may(Action::Plan) && !who.may(Action::Approve));
        assert!(matches!(
            resolve(&c, "sk_nope", 2),
            Err(CampaignError::Unauthenticated)
        ));
        revoke_key(&c, k.id, 3).unwrap();
        assert!(matches!(
            resolve(&c, &k.key, 4),
            Err(CampaignError::Unauthenticated)
        ));
    }

    #[test]
    fn sessions_expire_and_end() {
        let mut c = open_in_memory().unwrap();
        let (p, _, _, _) = tree(&mut c);
        create_user(
            &c,
            "bob",
            p,
            &[Role::Approver],
            Some("correct horse"),
            None,
            0,
        )
        .unwrap();
        assert!(login(&c, "bob", "wrong password", 0).unwrap().is_none());
        assert!(login(&c, "nobody", "correct horse", 0).unwrap().is_none());
        let s = login(&c, "bob", "correct horse", 100).unwrap().unwrap();
        assert_eq!(s.expires_at, 100 + SESSION_TTL_SECS);
        assert_eq!(resolve(&c, &s.token, 101).unwrap().user, "bob");
        assert!(resolve(&c, &s.token, 100 + SESSION_TTL_SECS).is_err());
        logout(&c, &s.token, 102).unwrap();
        assert!(resolve(&c, &s.token, 103).is_err());
    }

    #[test]
    fn disabled_users_cannot_authenticate() {
        let mut c = open_in_memory().unwrap();
        let (p, _, _, _) = tree(&mut c);
        let u = create_user(
            &c,
            "eve",
            p,
            &[Role::Auditor],
            Some("eve password"),
            None,
            0,
        )
        .unwrap();
        let k = create_key(&c, u, "", None, 0).unwrap();
        disable_user(&c, u).unwrap();
        assert!(resolve(&c, &k.key, 1).is_err());
        assert!(login(&c, "eve", "eve password", 1).unwrap().is_none());
    }

    #[test]
    fn bootstrap_runs_once() {
        let mut c = open_in_memory().unwrap();
        let b = bootstrap(&mut c, "P", "admin", None, Some("dev-key"), 0)
            .unwrap()
            .unwrap();
        assert_eq!(b.key, "dev-key");
        assert!(resolve(&c, "dev-key", 1).unwrap().may(Action::Admin));
        assert!(
            bootstrap(&mut c, "P", "admin", None, None, 0)
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn bearer_header_parsing() {
        let mut h = axum::http::HeaderMap::new();
        assert_eq!(bearer(&h), None);
        h.insert(header::AUTHORIZATION, "Bearer sk_abc".parse().unwrap());
        assert_eq!(bearer(&h), Some("sk_abc"));
        h.insert(header::AUTHORIZATION, "Basic abc".parse().unwrap());
        assert_eq!(bearer(&h), None);
        h.insert(header::AUTHORIZATION, "bearer ".parse().unwrap());
        assert_eq!(bearer(&h), None);
    }
}
