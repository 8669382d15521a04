# The real control plane for tests and the demo: kube-apiserver + kube-controller-manager v1.24
# and etcd from ../shared/k8s (see its README), with `kubesim node` as the cluster's one node
# (scheduler and kubelet: it binds pods and runs them as local processes). Sourced by
# scripts/test and scripts/demo; needs target/debug/{kubesim,quarks-job} built.
#
#   real_cluster_available          true when ../shared/k8s/control-plane exists
#   real_cluster_start DIR          starts both; DIR/kubeconfig is the admin kubeconfig
#   real_cluster_stop DIR           stops what real_cluster_start DIR started

real_cluster_script() {
    local root
    root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
    echo "$root/../shared/k8s/control-plane"
}

real_cluster_available() {
    [ -f "$(real_cluster_script)" ]
}

real_cluster_start() {
    local dir=$1 root
    root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
    real_cluster_stop "$dir"
    # A fresh cluster every time: etcd's data of an earlier run would hold its namespaces.
    rm -rf "$dir/control-plane/etcd" "$dir/node"
    mkdir -p "$dir"
    bash "$(real_cluster_script)" start "$dir/control-plane" >"$dir/control-plane.out" 2>&1 || {
        cat "$dir/control-plane.out" >&2
        echo "error: the control plane did not start (logs in $dir/control-plane/*.log)" >&2
        return 1
    }
    cp "$dir/control-plane/kubeconfig" "$dir/kubeconfig"
    # The CRD from the start, as on a cluster where quarks-job is installed: the garbage
    # collector acts on QuarksJobs' dependents only once its discovery has seen the CRD.
    "$root/target/debug/quarks-job" crd | kubectl --kubeconfig "$dir/kubeconfig" apply -f - >/dev/null 2>&1 || {
        echo "error: could not apply the QuarksJob CRD to the control plane" >&2
        return 1
    }
    setsid "$root/target/debug/kubesim" node --kubeconfig "$dir/kubeconfig" \
        --state-dir "$dir/node" --quarks-job-bin "$root/target/debug/quarks-job" \
        >"$dir/node.log" 2>&1 &
    echo $! >"$dir/node.pid"
    local _
    for _ in $(seq 300); do
        if kubectl --kubeconfig "$dir/kubeconfig" get nodes 2>/dev/null | grep -q ' Ready '; then
            return 0
        fi
        sleep 0.1
    done
    echo "error: kubesim node did not register a Ready Node (log: $dir/node.log)" >&2
    tail -20 "$dir/node.log" >&2
    return 1
}

real_cluster_stop() {
    local dir=$1
    if [ -s "$dir/node.pid" ]; then
        local pid
        pid=$(cat "$dir/node.pid")
        kill "$pid" 2>/dev/null || true
        for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$pid" 2>/dev/null || true
        rm -f "$dir/node.pid"
    fi
    if [ -d "$dir/control-plane" ]; then
        bash "$(real_cluster_script)" stop "$dir/control-plane" >/dev/null 2>&1 || true
    fi
}
