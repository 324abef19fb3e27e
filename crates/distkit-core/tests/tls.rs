//! `rediss://` URLs never depend on rustls' process-level crypto provider (its own process:
//! the provider is process-wide state).
#![cfg(feature = "tls")]

use distkit_core::ConnectOptions;
use distkit_core::fred::rustls::crypto::CryptoProvider;

#[test]
fn tls_urls_are_configured_without_the_process_level_crypto_provider() {
    // With both of rustls' providers in a process (ring for distkit, aws-lc-rs from another
    // crate) and none installed, anything that asks rustls for the process-level provider
    // panics. With ring alone (this build) it installs ring instead: so a TLS configuration
    // that asks leaves a provider installed, one with an explicit provider does not.
    for url in [
        "rediss://127.0.0.1:6380",
        "rediss://alice:secret@example.com:6380/2",
        "rediss-cluster://127.0.0.1:7000?node=127.0.0.1:7001",
        "rediss-sentinel://127.0.0.1:26379?sentinelServiceName=mymaster",
        "valkeys://example.com",
    ] {
        ConnectOptions::new(url)
            .validate()
            .unwrap_or_else(|error| panic!("{url}: {error}"));
        assert!(
            CryptoProvider::get_default().is_none(),
            "{url} asked rustls for the process-level provider"
        );
    }
}
