//! A config item's `statement`: placeholders found, checked to be one SELECT with a
//! real SQL parser (sqlparser, MySQL dialect), its WHERE analysed for the shapes the
//! materializer batches, and rendered to SQL text with `?` for every value.

use super::placeholder::{Placeholder, Ref, scan_sql};
use crate::value::Cell;
use sqlparser::ast::{
    BinaryOperator, Expr, GroupByExpr, SelectItem, SetExpr, Spanned, Statement as SqlStatement,
    visit_expressions,
};
use sqlparser::dialect::MySqlDialect;
use sqlparser::parser::Parser;
use std::ops::{ControlFlow, Range};

/// A parsed and checked statement.
#[derive(Debug, Clone)]
pub struct Statement {
    pub text: String,
    pub placeholders: Vec<Placeholder>,
    /// Top-level `AND` conjuncts of WHERE of the form `<column> = <placeholder>`.
    pub equalities: Vec<Comparison>,
    /// Top-level conjuncts `<column> > <placeholder>` (or `>=`) using `%__last`.
    pub last_bounds: Vec<Comparison>,
    /// How many top-level `AND` conjuncts WHERE has (0 without WHERE).
    pub conditions: usize,
    pub has_order_by: bool,
    pub has_limit: bool,
    /// GROUP BY, DISTINCT, HAVING or an aggregate in the select list: rows do not map
    /// one-to-one to the filtered table rows, so the statement cannot be batched.
    pub aggregates: bool,
    /// `SELECT *` (or `t.*`): every column of the table is in the result.
    pub selects_all: bool,
    /// Names of the plain columns and aliases in the select list.
    pub selected: Vec<String>,
}

/// `<column> <op> <placeholder>` at the top level of WHERE.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Comparison {
    /// The column's own name (last part of `t.col`, unquoted): how it appears in results.
    pub column: String,
    /// The column as written, for rewriting (`t.col`, `` `col` ``).
    pub column_sql: String,
    /// Index into [`Statement::placeholders`].
    pub placeholder: usize,
    /// `>=` rather than `>` (only for bounds).
    pub inclusive: bool,
    /// Byte range of the whole comparison in [`Statement::text`].
    pub range: Range<usize>,
}

/// A replacement of a range of the statement text by other SQL with its own values.
#[derive(Debug, Clone)]
pub struct Rewrite {
    pub range: Range<usize>,
    pub sql: String,
    pub params: Vec<Cell>,
}

const MARK: &str = "__mee_p";

impl Statement {
    /// Scan placeholders, then parse the statement with each placeholder standing in as
    /// an identifier, so the parser shows exactly where each one is used.
    pub fn parse(text: &str) -> Result<Self, String> {
        let placeholders = scan_sql(text)?;
        let (marked, offsets) = mark(text, &placeholders);
        let mut parsed = Parser::parse_sql(&MySqlDialect {}, &marked).map_err(|e| {
            let msg = strip_marks(&e.to_string(), &placeholders);
            let msg = msg.strip_prefix("sql parser error: ").unwrap_or(&msg);
            // Point at the original text, not the marked one the parser saw.
            match msg.rsplit_once(" at Line: ").and_then(|(head, at)| {
                let (line, col) = at.split_once(", Column: ")?;
                let byte =
                    offsets.to_original(&marked, line.parse().ok()?, col.trim().parse().ok()?)?;
                Some((head.to_string(), text.get(..byte)?.chars().count() + 1))
            }) {
                Some((head, char_col)) => {
                    format!("not valid SQL: {head} (at character {char_col} of the statement)")
                }
                None => format!("not valid SQL: {msg}"),
            }
        })?;
        if parsed.len() != 1 {
            return Err(format!(
                "must be exactly one SELECT statement, found {}",
                parsed.len()
            ));
        }
        let SqlStatement::Query(query) = parsed.remove(0) else {
            return Err("must be a SELECT statement".into());
        };
        let SetExpr::Select(select) = query.body.as_ref() else {
            return Err("must be a plain SELECT (no UNION, VALUES or parenthesised query)".into());
        };
        if select.into.is_some() || !query.locks.is_empty() {
            return Err("must be a plain SELECT (no INTO, no FOR UPDATE)".into());
        }

        // Every placeholder must stand where a value can: as an expression.
        let mut as_values = 0;
        let _ = visit_expressions(&query, |e: &Expr| {
            if let Expr::Identifier(id) = e
                && id.value.starts_with(MARK)
            {
                as_values += 1;
            }
            ControlFlow::<()>::Continue(())
        });
        if as_values != placeholders.len() {
            return Err(
                "placeholders may only stand for values (not table or column names)".into(),
            );
        }

        let to_original = |line: u64, col: u64| offsets.to_original(&marked, line, col);
        let mut equalities = Vec::new();
        let mut last_bounds = Vec::new();
        let mut conditions = 0;
        if let Some(selection) = &select.selection {
            for conjunct in conjuncts(selection) {
                conditions += 1;
                let Some((cmp, is_eq)) = comparison(conjunct, &placeholders, &to_original) else {
                    continue;
                };
                let is_last = matches!(placeholders[cmp.placeholder].reference, Ref::Last(_));
                match (is_eq, is_last) {
                    (true, false) => equalities.push(cmp),
                    (false, true) => last_bounds.push(cmp),
                    _ => {}
                }
            }
        }

        let mut aggregates = select.distinct.is_some()
            || select.having.is_some()
            || !matches!(&select.group_by, GroupByExpr::Expressions(e, _) if e.is_empty());
        let mut selects_all = false;
        let mut selected = Vec::new();
        for item in &select.projection {
            match item {
                SelectItem::Wildcard(_) | SelectItem::QualifiedWildcard(..) => selects_all = true,
                SelectItem::UnnamedExpr(e) => {
                    aggregates |= has_aggregate(e);
                    if let Some(name) = column_name(e) {
                        selected.push(name);
                    }
                }
                SelectItem::ExprWithAlias { expr, alias } => {
                    aggregates |= has_aggregate(expr);
                    selected.push(alias.value.clone());
                }
                SelectItem::ExprWithAliases { expr, aliases } => {
                    aggregates |= has_aggregate(expr);
                    selected.extend(aliases.iter().map(|a| a.value.clone()));
                }
            }
        }

        Ok(Self {
            text: text.to_string(),
            placeholders,
            equalities,
            last_bounds,
            conditions,
            has_order_by: query.order_by.is_some(),
            has_limit: query.limit_clause.is_some() || query.fetch.is_some(),
            aggregates,
            selects_all,
            selected,
        })
    }

    /// Whether a result row carries `column` (so rows can be matched back to requests).
    pub fn returns_column(&self, column: &str) -> bool {
        self.selects_all || self.selected.iter().any(|c| c.eq_ignore_ascii_case(column))
    }

    /// SQL text with `?` for each value, and the values in order. `value(i)` gives the
    /// value of placeholder `i`; `rewrites` replace ranges (with the placeholders in
    /// them) by other SQL. Values are never spliced into the text.
    pub fn render(
        &self,
        value: &dyn Fn(usize) -> Cell,
        rewrites: &[Rewrite],
    ) -> (String, Vec<Cell>) {
        let mut sql = String::with_capacity(self.text.len() + 16);
        let mut params = Vec::new();
        let mut at = 0;
        let mut rewrites: Vec<&Rewrite> = rewrites.iter().collect();
        rewrites.sort_by_key(|r| r.range.start);
        let mut ri = 0;
        for (i, p) in self.placeholders.iter().enumerate() {
            while ri < rewrites.len() && rewrites[ri].range.start <= p.start {
                let r = rewrites[ri];
                sql.push_str(&self.text[at..r.range.start]);
                sql.push_str(&r.sql);
                params.extend(r.params.iter().cloned());
                at = r.range.end;
                ri += 1;
            }
            if p.start < at {
                continue; // inside a rewritten range
            }
            sql.push_str(&self.text[at..p.start]);
            sql.push('?');
            params.push(value(i));
            at = p.end;
        }
        for r in &rewrites[ri..] {
            sql.push_str(&self.text[at..r.range.start]);
            sql.push_str(&r.sql);
            params.extend(r.params.iter().cloned());
            at = r.range.end;
        }
        sql.push_str(&self.text[at..]);
        (sql, params)
    }
}

/// The statement with placeholder `i` replaced by the identifier `__mee_p<i>`, and the
/// map from positions in that text back to the original.
fn mark(text: &str, placeholders: &[Placeholder]) -> (String, Offsets) {
    let mut out = String::with_capacity(text.len() + placeholders.len() * 8);
    let mut subs = Vec::new();
    let mut at = 0;
    for (i, p) in placeholders.iter().enumerate() {
        out.push_str(&text[at..p.start]);
        let start = out.len();
        out.push_str(&format!("{MARK}{i}"));
        subs.push((start, out.len(), p.start, p.end));
        at = p.end;
    }
    out.push_str(&text[at..]);
    (out, Offsets { subs })
}

fn strip_marks(message: &str, placeholders: &[Placeholder]) -> String {
    let mut m = message.to_string();
    for (i, p) in placeholders.iter().enumerate().rev() {
        m = m.replace(&format!("{MARK}{i}"), &p.reference.to_string());
    }
    m
}

struct Offsets {
    /// (marked start, marked end, original start, original end) per placeholder.
    subs: Vec<(usize, usize, usize, usize)>,
}

impl Offsets {
    /// Byte offset in the original text for a 1-based line/column of the marked text.
    fn to_original(&self, marked: &str, line: u64, col: u64) -> Option<usize> {
        let line_start = if line <= 1 {
            0
        } else {
            marked
                .match_indices('\n')
                .nth(usize::try_from(line).ok()? - 2)
                .map(|(i, _)| i + 1)?
        };
        let t = line_start
            + marked[line_start..]
                .chars()
                .take(usize::try_from(col).ok()?.checked_sub(1)?)
                .map(char::len_utf8)
                .sum::<usize>();
        let mut delta: isize = 0;
        for &(ms, me, os, oe) in &self.subs {
            if t >= me {
                delta += (oe - os) as isize - (me - ms) as isize;
            } else if t > ms {
                return Some(oe);
            }
        }
        usize::try_from(t as isize + delta).ok()
    }
}

/// The top-level `AND` conjuncts of an expression.
fn conjuncts(e: &Expr) -> Vec<&Expr> {
    match e {
        Expr::BinaryOp {
            left,
            op: BinaryOperator::And,
            right,
        } => {
            let mut v = conjuncts(left);
            v.extend(conjuncts(right));
            v
        }
        other => vec![other],
    }
}

/// `<column> (= | > | >=) <placeholder>`: the comparison and whether it is `=`.
fn comparison(
    e: &Expr,
    placeholders: &[Placeholder],
    to_original: &dyn Fn(u64, u64) -> Option<usize>,
) -> Option<(Comparison, bool)> {
    let Expr::BinaryOp { left, op, right } = e else {
        return None;
    };
    let (is_eq, inclusive) = match op {
        BinaryOperator::Eq => (true, false),
        BinaryOperator::Gt => (false, false),
        BinaryOperator::GtEq => (false, true),
        _ => return None,
    };
    let Expr::Identifier(p) = right.as_ref() else {
        return None;
    };
    let placeholder: usize = p.value.strip_prefix(MARK)?.parse().ok()?;
    let column = column_name(left)?;
    let span = e.span();
    let start = to_original(span.start.line, span.start.column)?;
    let end = placeholders.get(placeholder)?.end;
    (start < end).then_some(())?;
    Some((
        Comparison {
            column,
            column_sql: left.to_string(),
            placeholder,
            inclusive,
            range: start..end,
        },
        is_eq,
    ))
}

fn column_name(e: &Expr) -> Option<String> {
    match e {
        Expr::Identifier(id) if !id.value.starts_with(MARK) => Some(id.value.clone()),
        Expr::CompoundIdentifier(parts) => parts.last().map(|id| id.value.clone()),
        _ => None,
    }
}

const AGGREGATES: &[&str] = &[
    "COUNT",
    "SUM",
    "MIN",
    "MAX",
    "AVG",
    "GROUP_CONCAT",
    "JSON_ARRAYAGG",
    "JSON_OBJECTAGG",
    "BIT_AND",
    "BIT_OR",
    "BIT_XOR",
    "STD",
    "STDDEV",
    "STDDEV_POP",
    "STDDEV_SAMP",
    "VARIANCE",
    "VAR_POP",
    "VAR_SAMP",
];

fn has_aggregate(e: &Expr) -> bool {
    let mut found = false;
    let _ = visit_expressions(e, |x: &Expr| {
        if let Expr::Function(f) = x {
            let name = f.name.to_string().to_ascii_uppercase();
            if AGGREGATES.contains(&name.as_str()) {
                found = true;
                return ControlFlow::Break(());
            }
        }
        ControlFlow::Continue(())
    });
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Statement {
        Statement::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn finds_batchable_equalities_and_last_bounds() {
        let sql = "select * from auditor_relations where user_id = %__master.id and status = 1";
        let st = parse(sql);
        assert_eq!(st.equalities.len(), 1);
        let eq = &st.equalities[0];
        assert_eq!(eq.column, "user_id");
        assert_eq!(&sql[eq.range.clone()], "user_id = %__master.id");
        assert!(st.selects_all && !st.aggregates && !st.has_limit);

        let m = parse("select * from users where `id` > %__last.id:(0) and role_id = 1");
        assert_eq!(m.last_bounds.len(), 1);
        assert_eq!(
            &m.text[m.last_bounds[0].range.clone()],
            "`id` > %__last.id:(0)"
        );
        assert_eq!(m.last_bounds[0].column, "id");
    }

    #[test]
    fn spans_survive_multiline_and_unicode() {
        let sql = "select * from t\n where note = 'ä' and\n  t.parent_id = %__parent.id";
        let st = parse(sql);
        assert_eq!(
            &sql[st.equalities[0].range.clone()],
            "t.parent_id = %__parent.id"
        );
        assert_eq!(st.equalities[0].column_sql, "t.parent_id");
    }

    #[test]
    fn not_a_single_select_is_refused() {
        for bad in [
            "delete from users",
            "select 1; drop table users",
            "select * from a union select * from b",
            "select * from t where",
            "update t set a = %__master.a",
            "select * from %__master.tbl",
        ] {
            assert!(Statement::parse(bad).is_err(), "{bad} should be refused");
        }
    }

    #[test]
    fn aggregates_and_projections() {
        let st = parse("select count(*) as n from loans where user_id = %__master.id");
        assert!(st.aggregates);
        assert_eq!(st.selected, ["n"]);
        assert!(!st.returns_column("user_id"));
        assert!(parse("select distinct a from t").aggregates);
    }

    #[test]
    fn render_binds_every_value() {
        let st = parse("select * from t where a = %__master.a and b like 'x%' and c = %k.c:(0)");
        let (sql, params) = st.render(&|i| Cell::Int(i as i64 + 10), &[]);
        assert_eq!(sql, "select * from t where a = ? and b like 'x%' and c = ?");
        assert_eq!(params, [Cell::Int(10), Cell::Int(11)]);
    }

    #[test]
    fn render_applies_rewrites() {
        let st = parse("select * from t where a = %__master.a and c = 1");
        let rewrite = Rewrite {
            range: st.equalities[0].range.clone(),
            sql: "a IN (?, ?)".into(),
            params: vec![Cell::Int(1), Cell::Int(2)],
        };
        let (sql, params) = st.render(&|_| Cell::Null, &[rewrite]);
        assert_eq!(sql, "select * from t where a IN (?, ?) and c = 1");
        assert_eq!(params, [Cell::Int(1), Cell::Int(2)]);
    }

    #[test]
    fn hostile_values_stay_parameters() {
        let st = parse("select * from t where name = %__master.name");
        let evil = Cell::Bytes(b"x' OR 1=1; DROP TABLE t; -- /*".to_vec());
        let (sql, params) = st.render(&|_| evil.clone(), &[]);
        assert_eq!(sql, "select * from t where name = ?");
        assert_eq!(params, [evil]);
    }
}
