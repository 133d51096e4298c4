//! Query clauses the SQL stores write the same way. Type patterns and timestamps differ per
//! backend (arrays and `~` on PostgreSQL, `REGEXP` and RFC 3339 text on SQLite) and stay there.

use sqlx::{Database, Encode, QueryBuilder, Type};

use crate::query::{Order, Query};

/// Position bounds and the id columns, as `AND …` clauses.
pub(crate) fn push_common_filters<DB>(sql: &mut QueryBuilder<DB>, query: &Query)
where
    DB: Database,
    i64: for<'t> Encode<'t, DB> + Type<DB>,
    String: for<'t> Encode<'t, DB> + Type<DB>,
{
    if let Some(p) = query.after_position {
        sql.push(" AND position > ").push_bind(p as i64);
    }
    if let Some(p) = query.before_position {
        sql.push(" AND position < ").push_bind(p as i64);
    }
    for (column, value) in [
        ("project_id", &query.project_id),
        ("tenant_id", &query.tenant_id),
        ("user_id", &query.user_id),
    ] {
        if let Some(v) = value {
            sql.push(format_args!(" AND {column} = "))
                .push_bind(v.clone());
        }
    }
}

/// `ORDER BY position` in the query's direction, and one row more than a page (it proves a next page).
pub(crate) fn push_order_and_limit<DB>(sql: &mut QueryBuilder<DB>, query: &Query)
where
    DB: Database,
    i64: for<'t> Encode<'t, DB> + Type<DB>,
{
    sql.push(match query.order {
        Order::Asc => " ORDER BY position ASC",
        Order::Desc => " ORDER BY position DESC",
    });
    sql.push(" LIMIT ").push_bind((query.limit + 1) as i64);
}
