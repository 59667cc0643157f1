//! Startup checks on the source: each problem says what to change.

use mee_mysql::ServerInfo;

/// Everything wrong with the source for `listen`, as messages that say what to change.
/// `grants` are the lines of `SHOW GRANTS` (never logged: they may hold hashes).
pub fn problems(
    info: &ServerInfo,
    grants: &[String],
    server_id: Option<u32>,
    schema: &str,
) -> Vec<String> {
    let mut out = Vec::new();
    if !info.log_bin {
        out.push(
            "binary logging is off: start the server with log_bin (e.g. --log-bin=mysql-bin)"
                .into(),
        );
    }
    if !info.binlog_format.eq_ignore_ascii_case("ROW") {
        out.push(format!(
            "binlog_format is {}: set binlog_format=ROW (SET GLOBAL binlog_format='ROW' and in the server config)",
            display(&info.binlog_format)
        ));
    }
    if !info.binlog_row_image.eq_ignore_ascii_case("FULL") {
        out.push(format!(
            "binlog_row_image is {}: set binlog_row_image=FULL so updates carry whole rows",
            display(&info.binlog_row_image)
        ));
    }
    match info.binlog_row_metadata.as_deref() {
        Some(m) if m.eq_ignore_ascii_case("FULL") => {}
        other => out.push(format!(
            "binlog_row_metadata is {}: set binlog_row_metadata=FULL (MySQL 8.0.1+, MariaDB 10.5+) \
             so the binlog carries column names",
            display(other.unwrap_or("missing"))
        )),
    }
    match server_id {
        None => out.push(format!(
            "no server_id for this database: set [mysql.<database>] server_id to a number no \
             other replica of the source uses (the source itself is {})",
            info.server_id
        )),
        Some(id) if id == info.server_id => out.push(format!(
            "server_id {id} is the source's own id: choose another for listen"
        )),
        Some(_) => {}
    }
    let has = |privilege: &str, on_schema: bool| {
        grants.iter().any(|g| {
            let g = g.to_ascii_uppercase().replace('`', "");
            let Some((privs, rest)) = g.strip_prefix("GRANT ").and_then(|r| r.split_once(" ON "))
            else {
                return false;
            };
            let scope_ok = rest.starts_with("*.*")
                || (on_schema && rest.starts_with(&format!("{}.*", schema.to_ascii_uppercase())));
            scope_ok
                && privs
                    .split(',')
                    .map(str::trim)
                    .any(|p| p == privilege || p == "ALL PRIVILEGES" || p == "ALL")
        })
    };
    if !has("REPLICATION SLAVE", false) {
        out.push(
            "the user lacks REPLICATION SLAVE: GRANT REPLICATION SLAVE ON *.* TO <user>".into(),
        );
    }
    if !has("REPLICATION CLIENT", false) && !has("BINLOG MONITOR", false) {
        out.push(
            "the user lacks REPLICATION CLIENT (BINLOG MONITOR on MariaDB): GRANT REPLICATION CLIENT ON *.* TO <user>"
                .into(),
        );
    }
    if !has("SELECT", true) {
        out.push(format!(
            "the user lacks SELECT on {schema}: GRANT SELECT ON {schema}.* TO <user>"
        ));
    }
    out
}

fn display(v: &str) -> &str {
    if v.is_empty() { "unset" } else { v }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn good() -> ServerInfo {
        ServerInfo {
            version: "10.11.14-MariaDB".into(),
            is_mariadb: true,
            log_bin: true,
            binlog_format: "ROW".into(),
            binlog_row_image: "FULL".into(),
            binlog_row_metadata: Some("FULL".into()),
            server_id: 1,
        }
    }

    fn grants() -> Vec<String> {
        vec!["GRANT SELECT, REPLICATION SLAVE, BINLOG MONITOR ON *.* TO `mee`@`%` IDENTIFIED BY PASSWORD '*X'".into()]
    }

    #[test]
    fn a_good_source_passes() {
        assert!(problems(&good(), &grants(), Some(1001), "shop").is_empty());
        let mysql =
            vec!["GRANT SELECT, REPLICATION SLAVE, REPLICATION CLIENT ON *.* TO `mee`@`%`".into()];
        assert!(problems(&good(), &mysql, Some(1001), "shop").is_empty());
        let all = vec!["GRANT ALL PRIVILEGES ON *.* TO `root`@`localhost`".into()];
        assert!(problems(&good(), &all, Some(1001), "shop").is_empty());
    }

    #[test]
    fn every_problem_says_what_to_change() {
        let mut info = good();
        info.log_bin = false;
        info.binlog_format = "MIXED".into();
        info.binlog_row_image = "MINIMAL".into();
        info.binlog_row_metadata = Some("MINIMAL".into());
        let grants = vec!["GRANT SELECT ON `other`.* TO `mee`@`%`".into()];
        let p = problems(&info, &grants, Some(1), "shop");
        assert_eq!(p.len(), 8, "{p:#?}");
        assert!(p.iter().any(|m| m.contains("set binlog_format=ROW")));
        assert!(p.iter().any(|m| m.contains("source's own id")));
        assert!(p.iter().any(|m| m.contains("GRANT SELECT ON shop.*")));
        assert!(problems(&good(), &self::grants(), None, "shop")[0].contains("no server_id"));
    }

    #[test]
    fn select_on_the_schema_is_enough() {
        let g = vec![
            "GRANT REPLICATION SLAVE, REPLICATION CLIENT ON *.* TO `mee`@`%`".into(),
            "GRANT SELECT ON `shop`.* TO `mee`@`%`".into(),
        ];
        assert!(problems(&good(), &g, Some(5), "shop").is_empty());
    }
}
