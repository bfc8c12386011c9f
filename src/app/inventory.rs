//! Where a command's inventory comes from: files, the embedded demo, or the live cluster.

use std::sync::Arc;
use std::time::Duration;

use super::AppError;
use crate::config::{ClusterArgs, InventoryArgs};
use crate::inventory::{file, live, Index, InventoryError, SharedIndex};

/// A client for `--kubeconfig`, or for the default kubeconfig / in-cluster config.
pub(super) async fn cluster_client(
    kubeconfig: Option<&std::path::Path>,
) -> Result<kube::Client, String> {
    let config = match kubeconfig {
        Some(path) => {
            let kc = kube::config::Kubeconfig::read_from(path)
                .map_err(|e| format!("{}: {e}", path.display()))?;
            kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
                .await
                .map_err(|e| e.to_string())?
        }
        None => kube::Config::infer().await.map_err(|e| e.to_string())?,
    };
    kube::Client::try_from(config).map_err(|e| e.to_string())
}

/// How long `check --cluster` and `report --cluster` wait for the first full list of every kind.
const CLUSTER_SYNC_TIMEOUT: Duration = Duration::from_secs(60);

/// The cluster's inventory, read once through the same watchers `serve` keeps running.
async fn cluster_index(cluster: &ClusterArgs, inv: &InventoryArgs) -> Result<Index, AppError> {
    let client = cluster_client(cluster.kubeconfig.as_deref())
        .await
        .map_err(AppError::Kubeconfig)?;
    let shared = Arc::new(SharedIndex::syncing(
        Index::new(inv.filters()),
        CLUSTER_SYNC_TIMEOUT,
    ));
    live::spawn(client, Arc::clone(&shared));
    let deadline = std::time::Instant::now() + CLUSTER_SYNC_TIMEOUT;
    while let Err(why) = shared.readiness(std::time::Instant::now()) {
        if std::time::Instant::now() > deadline {
            return Err(AppError::ClusterSync(why));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(shared.take())
}

/// Files or the demo, or with `--cluster` the live cluster.
pub(super) async fn inventory_for(
    cluster: &ClusterArgs,
    inv: &InventoryArgs,
) -> Result<Index, AppError> {
    if cluster.cluster {
        cluster_index(cluster, inv).await
    } else {
        Ok(load_inventory(inv)?)
    }
}

pub fn load_inventory(args: &InventoryArgs) -> Result<Index, InventoryError> {
    if args.inventory.is_empty() {
        tracing::info!(
            "no --inventory given: using the embedded demo inventory (the seed scenario)"
        );
        return file::demo(args.filters());
    }
    file::load(&args.inventory, args.filters(), args.allow_empty_inventory)
}
