#!/usr/bin/env bash
# `make run` as root: the operator as users run it, on the real local node. Builds the images here
# (hack/images.sh), starts the control plane and node `dev` (hack/node.sh), installs the chart with Helm (the
# three controllers as pods, in a namespace enforcing the restricted Pod Security profile), runs MariaDB and
# memcached as pods, applies the sample KeystoneAPI with the local Keystone image, waits until it is Ready and
# prints how to get a token. Everything keeps running; `make node-down` stops the node and its control plane.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"
NAMESPACE=${NAMESPACE:-openstack}
OPERATOR_NAMESPACE=${OPERATOR_NAMESPACE:-keystone-operator}
KEYSTONE_IMAGE=$(hack/images.sh ref keystone)
t0=$SECONDS
hack/install-test-deps.sh --node
images=$(hack/images.sh all)  # fails the script when a build fails
mapfile -t tars <<<"$images"
eval "$(hack/node.sh up --name dev)"
hack/node.sh load --name dev "${tars[@]}"
kubectl="$(hack/build-control-plane.sh)/kubectl"
helm=$(hack/build-helm.sh)
restricted() {
  printf 'apiVersion: v1\nkind: Namespace\nmetadata:\n  name: %s\n  labels:\n    pod-security.kubernetes.io/enforce: restricted\n' "$1" \
    | "$kubectl" apply -f - >/dev/null
}
restricted "$OPERATOR_NAMESPACE"
"$helm" upgrade --install keystone-operator charts/keystone-operator -n "$OPERATOR_NAMESPACE" \
  --set image.registry=localhost/keystone-operator --set image.tag="$(hack/images.sh ref keystone | sed 's/.*://')" \
  --set image.pullPolicy=Never --wait --timeout 5m >/dev/null
echo "run: the operator is running as pods in $OPERATOR_NAMESPACE (helm release keystone-operator)"
restricted "$NAMESPACE"
"$kubectl" -n "$NAMESPACE" apply -f manifests/samples/osp-secret.yaml -f e2e/node/infra.yaml >/dev/null
sed "s|^\(  containerImage:\).*|\1 $KEYSTONE_IMAGE|" manifests/samples/keystoneapi.yaml | "$kubectl" -n "$NAMESPACE" apply -f -
echo "run: waiting for the sample KeystoneAPI to become Ready (db-create, db-sync and bootstrap Jobs, then the API pod)"
"$kubectl" -n "$NAMESPACE" wait keystoneapi/keystone --for=condition=Ready --timeout=10m
ip=$("$kubectl" -n "$NAMESPACE" get service keystone-public -o jsonpath='{.spec.clusterIP}')
echo "run: Ready; $((SECONDS - t0))s in all"
cat <<MSG

Keystone answers at http://keystone-public.$NAMESPACE.svc:5000/v3 inside the cluster and at http://$ip:5000/v3
(the Service's ClusterIP, through kube-proxy) from this machine. The admin password is the sample osp-secret's
AdminPassword. From this machine:
  env -i PATH=/usr/bin:/bin openstack --os-auth-url http://$ip:5000/v3 --os-identity-api-version 3 \\
    --os-username admin --os-password "\$(kubectl -n $NAMESPACE get secret osp-secret -o jsonpath='{.data.AdminPassword}' | base64 -d)" \\
    --os-project-name admin --os-user-domain-name Default --os-project-domain-name Default token issue
From a client pod (Service names resolve through the cluster DNS):
  kubectl -n $NAMESPACE apply -f e2e/node/client.yaml && kubectl -n $NAMESPACE wait pod/client --for=condition=Ready
  kubectl -n $NAMESPACE exec client -- openstack --os-auth-url http://keystone-public.$NAMESPACE.svc:5000/v3 \
    --os-identity-api-version 3 --os-username admin \
    --os-password "\$(kubectl -n $NAMESPACE get secret osp-secret -o jsonpath='{.data.AdminPassword}' | base64 -d)" \
    --os-project-name admin --os-user-domain-name Default --os-project-domain-name Default token issue

  export KUBECONFIG=$KUBECONFIG       # kubectl is $kubectl
  kubectl -n $NAMESPACE get keystoneapi,pods,jobs
  kubectl -n $OPERATOR_NAMESPACE logs deploy/keystone-operator-api
  kubectl -n $NAMESPACE logs job/<a db-sync Job>
'make node-down' stops the node and its control plane and undoes the host changes.
MSG
