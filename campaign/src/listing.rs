//! Paged search of campaigns, activities, tasks and bulk sends, as a caller sees them.
//!
//! Every listing is scoped by the caller's visible organisations ([`crate::identity::Scope`])
//! and filtered by the optional [`ListQuery`] fields: `state` (a task's state; for a bulk
//! send, its task's), `owner` (the creating user's name), `org` (that organisation and those
//! below it), `q` (case-insensitive name substring; a bulk send matches on its task's
//! name). Pages are newest first; `limit` defaults to [`DEFAULT_LIMIT`] and may not exceed
//! [`MAX_LIMIT`]. The answer carries `total`, the number of matches over all pages.
//!
//! Rows are JSON objects named by the SQL column aliases below, so the HTTP API and the
//! console read one shape: `org` is the owning organisation (NULL rows show the root),
//! `owner` the creator's name (NULL for rows written by the local CLI or before identity).

use rusqlite::types::ValueRef;
use rusqlite::{Connection, ToSql};
use serde_json::{Map, Value, json};

use crate::error::{CampaignError, Result};
use crate::identity::{Caller, Object, Scope, ensure_visible};

/// Page size when none is asked for.
pub const DEFAULT_LIMIT: u32 = 50;
/// Largest page.
pub const MAX_LIMIT: u32 = 500;

/// Filters and paging of a listing (query string of the `GET` endpoints).
#[derive(Debug, Clone, Default, serde::Deserialize)]
pub struct ListQuery {
    pub limit: Option<u32>,
    pub offset: Option<u32>,
    pub state: Option<String>,
    pub owner: Option<String>,
    pub org: Option<i64>,
    pub q: Option<String>,
}

/// What a listing lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Campaigns,
    Activities,
    Tasks,
    Bulk,
}

const ROOT: &str = "(SELECT id FROM orgs WHERE parent_id IS NULL)";

impl Kind {
    /// `FROM` clause (scoped table aliased `x`, creator `u`).
    fn from(self) -> &'static str {
        match self {
            Self::Campaigns => "campaigns x LEFT JOIN users u ON u.id = x.created_by",
            Self::Activities => "activities x LEFT JOIN users u ON u.id = x.created_by",
            Self::Tasks => {
                "tasks x LEFT JOIN users u ON u.id = x.created_by
                 LEFT JOIN activities a ON a.id = x.activity_id"
            }
            Self::Bulk => {
                "bulk_sends x LEFT JOIN users u ON u.id = x.created_by
                 JOIN tasks t ON t.id = x.task_id"
            }
        }
    }

    fn columns(self) -> String {
        let common = format!(
            "x.id AS id, COALESCE(x.org_id, {ROOT}) AS org, u.name AS owner,
             x.updated_at AS updated_at"
        );
        let next_slice =
            "(SELECT MIN(s.start_at) FROM slices s JOIN bulk_sends b ON b.id = s.bulk_id
                            WHERE b.task_id = {task} AND s.done = 0)";
        match self {
            Self::Campaigns => format!(
                "{common}, x.name AS name, x.created_at AS created_at,
                 (SELECT COUNT(*) FROM activities a WHERE a.campaign_id = x.id) AS activities,
                 (SELECT COUNT(*) FROM tasks t JOIN activities a ON a.id = t.activity_id
                   WHERE a.campaign_id = x.id) AS tasks"
            ),
            Self::Activities => format!(
                "{common}, x.name AS name, x.campaign_id AS campaign,
                 (SELECT COUNT(*) FROM tasks t WHERE t.activity_id = x.id) AS tasks"
            ),
            Self::Tasks => format!(
                "{common}, x.name AS name, x.state AS state, x.activity_id AS activity,
                 a.campaign_id AS campaign, x.created_at AS created_at,
                 (SELECT COUNT(*) FROM contacts c WHERE c.task_id = x.id) AS contacts,
                 (SELECT COUNT(*) FROM bulk_sends b WHERE b.task_id = x.id) AS bulk_sends,
                 {} AS next_slice_at",
                next_slice.replace("{task}", "x.id")
            ),
            Self::Bulk => format!(
                "{common}, x.task_id AS task, t.name AS task_name, t.state AS state,
                 json_extract(x.spec, '$.segment') AS segment,
                 json_extract(x.spec, '$.channel') AS channel, x.planned_at AS planned_at,
                 (SELECT COUNT(*) FROM slices s WHERE s.bulk_id = x.id) AS slices,
                 (SELECT COUNT(*) FROM slices s WHERE s.bulk_id = x.id AND s.done = 1) AS slices_done,
                 (SELECT COUNT(*) FROM contacts c WHERE c.bulk_id = x.id) AS contacts,
                 (SELECT MIN(s.start_at) FROM slices s WHERE s.bulk_id = x.id AND s.done = 0)
                   AS next_slice_at"
            ),
        }
    }

    fn state_col(self) -> Option<&'static str> {
        match self {
            Self::Campaigns | Self::Activities => None,
            Self::Tasks => Some("x.state"),
            Self::Bulk => Some("t.state"),
        }
    }

    fn name_col(self) -> &'static str {
        match self {
            Self::Bulk => "t.name",
            _ => "x.name",
        }
    }
}

/// One page of `kind` as `caller` sees it: `{"items", "total", "limit", "offset"}`.
///
/// # Errors
/// [`CampaignError::Invalid`] for `limit` above [`MAX_LIMIT`], an unknown task state or a
/// state filter on campaigns / activities; SQLite failure.
pub fn list(conn: &Connection, caller: &Caller, kind: Kind, q: &ListQuery) -> Result<Value> {
    let limit = q.limit.unwrap_or(DEFAULT_LIMIT);
    if limit > MAX_LIMIT {
        return Err(CampaignError::invalid(
            "limit",
            format!("at most {MAX_LIMIT}, got {limit}"),
        ));
    }
    let offset = q.offset.unwrap_or(0);
    if let Some(s) = &q.state {
        if kind.state_col().is_none() {
            return Err(CampaignError::invalid(
                "state",
                "only tasks and bulk sends have a state",
            ));
        }
        s.parse::<crate::lifecycle::TaskState>()?;
    }
    let filter = Filter::new(caller, kind, q);
    let total: i64 = conn.query_row(
        &format!(
            "{} SELECT COUNT(*) FROM {} WHERE {}",
            filter.with,
            kind.from(),
            filter.sql
        ),
        filter.params().as_slice(),
        |r| r.get(0),
    )?;
    let sql = format!(
        "{} SELECT {} FROM {} WHERE {} ORDER BY x.id DESC LIMIT :limit OFFSET :offset",
        filter.with,
        kind.columns(),
        kind.from(),
        filter.sql
    );
    let (limit_v, offset_v) = (i64::from(limit), i64::from(offset));
    let mut params = filter.params();
    params.push((":limit", &limit_v));
    params.push((":offset", &offset_v));
    let items = rows(conn, &sql, &params)?;
    Ok(json!({"items": items, "total": total, "limit": limit, "offset": offset}))
}

/// One campaign with its activities, if `caller` may see it.
///
/// # Errors
/// [`CampaignError::NotFound`] for an unknown or another tenant's campaign; SQLite failure.
pub fn campaign(conn: &Connection, caller: &Caller, id: i64) -> Result<Value> {
    ensure_visible(conn, caller, Object::Campaign, id)?;
    let one = |kind: Kind, col: &str| {
        rows(
            conn,
            &format!(
                "SELECT {} FROM {} WHERE x.{col} = :id ORDER BY x.id",
                kind.columns(),
                kind.from()
            ),
            &[(":id", &id as &dyn ToSql)],
        )
    };
    let mut c = one(Kind::Campaigns, "id")?;
    let mut out = match c.pop() {
        Some(Value::Object(m)) => m,
        _ => {
            return Err(CampaignError::NotFound {
                what: "campaign",
                id,
            });
        }
    };
    out.insert(
        "activity_list".into(),
        Value::Array(one(Kind::Activities, "campaign_id")?),
    );
    Ok(Value::Object(out))
}

/// The WHERE clause of a listing and its bound values.
struct Filter {
    with: String,
    sql: String,
    visible: String,
    state: Option<String>,
    owner: Option<String>,
    org: Option<i64>,
    q: Option<String>,
}

impl Filter {
    fn new(caller: &Caller, kind: Kind, q: &ListQuery) -> Self {
        let state = kind.state_col().map_or_else(String::new, |c| {
            format!(" AND (:state IS NULL OR {c} = :state)")
        });
        Self {
            with: "WITH RECURSIVE sub(id) AS (SELECT :org WHERE :org IS NOT NULL
                     UNION ALL SELECT o.id FROM orgs o JOIN sub ON o.parent_id = sub.id)"
                .to_owned(),
            sql: format!(
                "{}{state} AND (:owner IS NULL OR u.name = :owner)
                 AND (:org IS NULL OR COALESCE(x.org_id, {ROOT}) IN (SELECT id FROM sub))
                 AND (:q IS NULL OR instr(lower({}), lower(:q)) > 0)",
                Scope::sql("x"),
                kind.name_col()
            ),
            visible: caller.scope().visible,
            state: kind.state_col().and(q.state.clone()),
            owner: q.owner.clone(),
            org: q.org,
            q: q.q.clone().filter(|s| !s.is_empty()),
        }
    }

    fn params(&self) -> Vec<(&'static str, &dyn ToSql)> {
        let mut p: Vec<(&'static str, &dyn ToSql)> = vec![
            (":scope_visible", &self.visible),
            (":owner", &self.owner),
            (":org", &self.org),
            (":q", &self.q),
        ];
        if self.sql.contains(":state") {
            p.push((":state", &self.state));
        }
        p
    }
}

/// Runs `sql` and turns each row into a JSON object keyed by column name.
fn rows(conn: &Connection, sql: &str, params: &[(&str, &dyn ToSql)]) -> Result<Vec<Value>> {
    let mut st = conn.prepare(sql)?;
    let names: Vec<String> = st.column_names().map(str::to_owned).collect();
    let mut q = st.query(params)?;
    let mut out = Vec::new();
    while let Some(r) = q.next()? {
        let mut m = Map::new();
        for (i, n) in names.iter().enumerate() {
            let v = match r.get_ref(i)? {
                ValueRef::Null => Value::Null,
                ValueRef::Integer(n) => Value::from(n),
                ValueRef::Real(f) => Value::from(f),
                ValueRef::Text(t) => Value::from(String::from_utf8_lossy(t).into_owned()),
                ValueRef::Blob(_) => continue,
            };
            m.insert(n.clone(), v);
        }
        out.push(Value::Object(m));
    }
    Ok(out)
}
