//! chromedriver and headless Chromium for the tests that look at pages and pictures in a real
//! browser (`tests/http_browser.rs`, `tests/illustrations.rs`).

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;
use thirtyfour::prelude::*;

use crate::common::{free_port, wait_for};

/// chromedriver on a free port, killed when dropped.
pub struct Chromedriver {
    child: Child,
    url: String,
    /// The Chromium binary (`command -v chromium`).
    chromium: String,
}

impl Chromedriver {
    /// Starts chromedriver and waits until it is ready (blocking: call it outside the runtime).
    pub fn start() -> Chromedriver {
        let mut paths = Vec::new();
        for tool in ["chromedriver", "chromium"] {
            let found = Command::new("sh")
                .args(["-c", &format!("command -v {tool}")])
                .stderr(Stdio::null())
                .output()
                .ok()
                .filter(|out| out.status.success())
                .map(|out| String::from_utf8_lossy(&out.stdout).trim().to_string());
            paths.push(found.unwrap_or_else(|| {
                panic!(
                    "`{tool}` is not installed: run scripts/test, which installs chromium and chromium-driver"
                )
            }));
        }
        let port = free_port();
        let child = Command::new(&paths[0])
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting chromedriver");
        let driver = Chromedriver {
            child,
            url: format!("http://127.0.0.1:{port}"),
            chromium: paths[1].clone(),
        };
        let client = reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()
            .unwrap();
        wait_for("chromedriver to be ready", Duration::from_secs(30), || {
            let status = client.get(format!("{}/status", driver.url)).send();
            let body: Value = status.ok()?.json().ok()?;
            body["value"]["ready"].as_bool()?.then_some(())
        });
        driver
    }

    /// A new headless Chromium session, its window `width`×`height`.
    pub async fn session(&self, width: u32, height: u32) -> WebDriver {
        let mut capabilities = DesiredCapabilities::chrome();
        capabilities
            .set_binary(&self.chromium)
            .expect("the binary capability");
        for arg in [
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            // In a container the GPU process's own sandbox may be refused (its thread check
            // fails with EACCES) and Chromium exits; headless pages need neither.
            "--disable-gpu-sandbox",
            "--disable-dev-shm-usage",
            "--hide-scrollbars",
        ] {
            capabilities.add_arg(arg).expect("a Chromium argument");
        }
        capabilities
            .add_arg(&format!("--window-size={width},{height}"))
            .expect("a Chromium argument");
        WebDriver::builder(self.url.as_str(), capabilities)
            .request_timeout(Duration::from_secs(60))
            .await
            .expect("a Chromium session")
    }
}

impl Drop for Chromedriver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
