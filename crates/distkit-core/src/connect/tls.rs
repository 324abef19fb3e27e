//! The default TLS connector of `rediss://` URLs.

use std::sync::Arc;

use fred::error::{Error as FredError, ErrorKind};
use fred::rustls::{ClientConfig, RootCertStore};
use fred::types::config::TlsConnector;

use crate::DistkitError;

/// rustls' client configuration for `rediss://` URLs: the system's root certificates (as
/// `rustls-native-certs` finds them: `SSL_CERT_FILE` and `SSL_CERT_DIR` override the
/// platform's store) and the `ring` crypto provider, named explicitly so that it never
/// depends on (nor panics for want of) a process-level default provider.
///
/// # Errors
///
/// [`DistkitError::RedisError`] of kind `Tls` when the root certificates cannot be read.
pub(super) fn default_client_config() -> Result<ClientConfig, DistkitError> {
    let tls_error =
        |message: String| -> DistkitError { FredError::new(ErrorKind::Tls, message).into() };
    let found = fred::rustls_native_certs::load_native_certs();
    if let Some(error) = found.errors.first() {
        return Err(tls_error(format!(
            "cannot load the system's root certificates: {error}"
        )));
    }
    let mut roots = RootCertStore::empty();
    // Certificates rustls cannot use are skipped, as rustls-native-certs advises.
    let (_added, _ignored) = roots.add_parsable_certificates(found.certs);
    let provider = Arc::new(fred::rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|error| tls_error(format!("cannot configure TLS: {error}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(config)
}

/// fred's connector for [`default_client_config`].
///
/// # Errors
///
/// As [`default_client_config`].
pub(super) fn default_connector() -> Result<TlsConnector, DistkitError> {
    Ok(default_client_config()?.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_tls_configuration_names_the_ring_provider_explicitly() {
        let config = default_client_config().unwrap_or_else(|error| panic!("{error}"));
        let ring = fred::rustls::crypto::ring::default_provider();
        let names = |suites: &[fred::rustls::SupportedCipherSuite]| {
            suites.iter().map(|suite| suite.suite()).collect::<Vec<_>>()
        };
        assert_eq!(
            names(&config.crypto_provider().cipher_suites),
            names(&ring.cipher_suites)
        );
    }
}
