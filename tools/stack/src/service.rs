//! The three services: their app ids, ports and what each needs to run.

use crate::daprd::SidecarPorts;
use std::path::PathBuf;
use std::process::Command;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Service {
    Events,
    Grayscale,
    Classify,
}

impl Service {
    pub const ALL: [Service; 3] = [Service::Events, Service::Grayscale, Service::Classify];

    pub fn app_id(self) -> &'static str {
        match self {
            Service::Grayscale => "image-api-grayscale",
            Service::Classify => "image-api-classify",
            Service::Events => "events-service",
        }
    }

    /// The cargo binary (and `.wasm`) name.
    pub fn binary(self) -> &'static str {
        self.app_id()
    }

    /// The original template's ports, used by `make up`.
    pub fn app_port(self) -> u16 {
        match self {
            Service::Grayscale => 9005,
            Service::Classify => 9006,
            Service::Events => 9007,
        }
    }

    /// Fixed sidecar ports for `make up`: HTTP 3503-3505 as the original,
    /// gRPC 50003-5, internal gRPC 50103-5, metrics 9803-5.
    pub fn sidecar_ports(self) -> SidecarPorts {
        let n = match self {
            Service::Grayscale => 3,
            Service::Classify => 4,
            Service::Events => 5,
        };
        SidecarPorts { http: 3500 + n, grpc: 50000 + n, internal_grpc: 50100 + n, metrics: 9800 + n }
    }

    /// Settings this service needs beyond ports (model files for classify).
    pub fn env(self) -> Vec<(String, String)> {
        let models = crate::paths::shared_dir().join("models");
        match self {
            Service::Classify => vec![
                ("CLASSIFY_MODEL_PATH".into(), models.join("mobilenet_v2_1.0_224_quant.tflite").display().to_string()),
                ("CLASSIFY_LABELS_PATH".into(), models.join("labels_mobilenet_quant_v1_224.txt").display().to_string()),
            ],
            _ => Vec::new(),
        }
    }
}

/// What runs the service's code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Runtime {
    /// The native binary cargo built.
    Native,
}

impl Runtime {
    pub fn name(self) -> &'static str {
        match self {
            Runtime::Native => "native",
        }
    }

    /// The command that runs `service` with `env`.
    pub fn command(self, service: Service, env: &[(String, String)]) -> Command {
        match self {
            Runtime::Native => {
                let mut cmd = Command::new(native_binary(service));
                cmd.env_clear()
                    .env("PATH", std::env::var_os("PATH").unwrap_or_default())
                    .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
                cmd
            }
        }
    }
}

pub fn native_binary(service: Service) -> PathBuf {
    crate::paths::bin_dir().join(service.binary())
}
