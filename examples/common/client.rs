//! How the example clients (`storefront`, `story`, `factory`) end a run: one place, so a
//! refused call reads the same from each of them.

use std::path::Path;
use std::process::ExitCode;

/// Success, or the error on standard error as the status the server chose (code,
/// message, reason) with a hint where one helps (no token found, a plaintext address
/// meeting a TLS server: [`c2m_server::auth::client_error`]), and a failing exit code.
pub fn finish(
    result: anyhow::Result<()>,
    addr: &str,
    token_given: bool,
    data_dir: &Path,
) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!(
                "{}",
                c2m_server::auth::client_error(&e, addr, token_given, data_dir)
            );
            ExitCode::FAILURE
        }
    }
}
