//! Certificates for encrypted migrations in tests: a CA and the certificates it issues,
//! made with openssl.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Runs openssl in `dir` with the words of `command` as its arguments (no word has a
/// space); panics with its stderr when it fails.
fn openssl(dir: &Path, command: &str) {
    let out = Command::new("openssl")
        .current_dir(dir)
        .args(command.split_whitespace())
        .output()
        .expect("run openssl");
    assert!(
        out.status.success(),
        "openssl {command}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A certificate authority: `ca-cert.pem` and its key, in a directory of its own.
pub struct Ca {
    /// Where `ca-cert.pem` and its key are.
    pub dir: PathBuf,
}

/// Which end of the stream a certificate is for.
#[derive(Clone, Copy)]
pub enum Role {
    /// The destination, which listens: `server-cert.pem`, `serverAuth`.
    Server,
    /// The source, which connects: `client-cert.pem`, `clientAuth`.
    Client,
}

impl Ca {
    /// A CA named `name` (no spaces) whose files live in `dir`.
    pub fn new(dir: PathBuf, name: &str) -> Ca {
        std::fs::create_dir_all(&dir).expect("CA directory");
        openssl(
            &dir,
            &format!(
                "req -x509 -newkey rsa:2048 -nodes -keyout ca-key.pem -out ca-cert.pem -days 2 \
                 -subj /CN={name} -addext basicConstraints=critical,CA:TRUE \
                 -addext keyUsage=critical,keyCertSign,cRLSign"
            ),
        );
        Ca { dir }
    }

    /// Issues a certificate for `role` naming `alt_names` (a subjectAltName value) into
    /// `into`, with this CA's certificate beside it as QEMU expects.
    pub fn issue(&self, into: &Path, role: Role, alt_names: &str) {
        std::fs::create_dir_all(into).expect("certificate directory");
        let (name, usage) = match role {
            Role::Server => ("server", "serverAuth"),
            Role::Client => ("client", "clientAuth"),
        };
        let extensions = format!(
            "basicConstraints=critical,CA:FALSE\n\
             keyUsage=critical,digitalSignature,keyEncipherment\n\
             extendedKeyUsage={usage}\n\
             subjectAltName={alt_names}\n"
        );
        std::fs::write(into.join(format!("{name}.ext")), extensions).expect("write extensions");
        let at = into.display();
        openssl(
            &self.dir,
            &format!(
                "req -newkey rsa:2048 -nodes -keyout {at}/{name}-key.pem -out {at}/{name}.csr \
                 -subj /CN=vfio-migrate-test-{name}"
            ),
        );
        openssl(
            &self.dir,
            &format!(
                "x509 -req -in {at}/{name}.csr -CA ca-cert.pem -CAkey ca-key.pem -CAcreateserial \
                 -days 2 -out {at}/{name}-cert.pem -extfile {at}/{name}.ext"
            ),
        );
        std::fs::copy(self.dir.join("ca-cert.pem"), into.join("ca-cert.pem")).expect("copy the CA");
    }
}
