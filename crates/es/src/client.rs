use crate::EsError;
use elasticsearch::Elasticsearch;
use elasticsearch::auth::Credentials;
use elasticsearch::cert::{Certificate, CertificateValidation};
use elasticsearch::http::transport::{SingleNodeConnectionPool, TransportBuilder};
use mee_core::config::ElasticsearchConfig;
use serde::Deserialize;
use std::time::Duration;

/// A client for the configured cluster. Reads the CA file, if any; no request is sent.
pub fn client(cfg: &ElasticsearchConfig) -> Result<Elasticsearch, EsError> {
    let url = url::Url::parse(&cfg.url)
        .map_err(|e| EsError::Settings(format!("elasticsearch.url: {e}")))?;
    let mut b = TransportBuilder::new(SingleNodeConnectionPool::new(url))
        .timeout(Duration::from_millis(cfg.request_timeout_ms))
        .disable_proxy();
    let auth = &cfg.auth;
    if let Some(key) = &auth.api_key {
        b = b.auth(Credentials::EncodedApiKey(key.expose().to_string()));
    } else if let (Some(user), Some(pass)) = (&auth.username, &auth.password) {
        b = b.auth(Credentials::Basic(user.clone(), pass.expose().to_string()));
    }
    if cfg.tls.insecure_skip_verify {
        b = b.cert_validation(CertificateValidation::None);
    } else if let Some(path) = &cfg.tls.ca_file {
        let pem = std::fs::read(path).map_err(|e| {
            EsError::Settings(format!("elasticsearch.tls.ca_file {}: {e}", path.display()))
        })?;
        let cert = Certificate::from_pem(&pem).map_err(|e| {
            EsError::Settings(format!("elasticsearch.tls.ca_file {}: {e}", path.display()))
        })?;
        b = b.cert_validation(CertificateValidation::Full(cert));
    }
    let transport = b.build().map_err(|e| EsError::Settings(e.to_string()))?;
    Ok(Elasticsearch::new(transport))
}

/// What `GET /` says about the cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterInfo {
    pub cluster_name: String,
    pub version: String,
    /// `elasticsearch` or `opensearch`.
    pub distribution: String,
}

#[derive(Deserialize)]
struct Root {
    cluster_name: String,
    version: RootVersion,
}

#[derive(Deserialize)]
struct RootVersion {
    number: String,
    #[serde(default)]
    distribution: Option<String>,
}

/// `GET /`: proves the cluster answers and says which product and version it is.
pub async fn cluster_info(client: &Elasticsearch) -> Result<ClusterInfo, EsError> {
    let what = "GET /";
    let resp = client
        .info()
        .send()
        .await
        .map_err(|source| EsError::Request {
            what: what.into(),
            source,
        })?;
    let status = resp.status_code().as_u16();
    if status != 200 {
        let body = resp.text().await.unwrap_or_default();
        return Err(EsError::Status {
            what: what.into(),
            status,
            body,
        });
    }
    let root: Root = resp.json().await.map_err(|source| EsError::Request {
        what: what.into(),
        source,
    })?;
    Ok(ClusterInfo {
        cluster_name: root.cluster_name,
        version: root.version.number,
        distribution: root
            .version
            .distribution
            .unwrap_or_else(|| "elasticsearch".into()),
    })
}
