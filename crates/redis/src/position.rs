//! Where `listen` resumes: the binlog position after the last transaction whose every
//! event Kafka confirmed, one key per source database:
//! `<prefix>:listen:<database>:position` → `{"file":..,"offset":..,"gtid":..}`.

use crate::{Keys, RedisError};
use mee_core::BinlogPosition;
use redis::AsyncCommands;
use redis::aio::ConnectionManager;

#[derive(Debug, Clone)]
pub struct PositionStore {
    conn: ConnectionManager,
    key: String,
    url: String,
}

impl PositionStore {
    pub fn new(conn: ConnectionManager, keys: &Keys, database: &str, shown_url: &str) -> Self {
        Self {
            conn,
            key: keys.key(&["listen", database, "position"]),
            url: shown_url.to_string(),
        }
    }

    pub async fn load(&mut self) -> Result<Option<BinlogPosition>, RedisError> {
        let raw: Option<String> =
            self.conn
                .get(&self.key)
                .await
                .map_err(|source| RedisError::Request {
                    url: self.url.clone(),
                    what: "GET position",
                    source,
                })?;
        raw.map(|s| {
            serde_json::from_str(&s).map_err(|e| RedisError::Corrupt {
                key: self.key.clone(),
                message: e.to_string(),
            })
        })
        .transpose()
    }

    pub async fn save(&mut self, pos: &BinlogPosition) -> Result<(), RedisError> {
        let json = serde_json::to_string(pos).expect("a position serializes");
        self.conn
            .set::<_, _, ()>(&self.key, json)
            .await
            .map_err(|source| RedisError::Request {
                url: self.url.clone(),
                what: "SET position",
                source,
            })
    }
}
