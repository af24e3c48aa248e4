{{/*
Least-privilege rules per controller, in the watched namespaces. The README's RBAC table explains each
grant. RBAC cannot restrict names the operator derives from the KeystoneAPI's name, so grants are per kind.
*/}}

{{- define "keystone-operator.rules.common" -}}
# Every controller watches KeystoneAPIs and server-side-applies its own status fields and conditions.
- apiGroups: [keystone.openstack.org]
  resources: [keystoneapis]
  verbs: [get, list, watch]
- apiGroups: [keystone.openstack.org]
  resources: [keystoneapis/status]
  verbs: [get, patch]
# Events on the KeystoneAPI for transitions a user cares about.
- apiGroups: [events.k8s.io]
  resources: [events]
  verbs: [create, patch]
{{- end -}}

{{- define "keystone-operator.rules.api" -}}
{{ include "keystone-operator.rules.common" . }}
# Hashed config ConfigMaps and config Secrets: applied, watched (metadata), old versions deleted. Secrets
# also: get of the user's password/custom-config Secrets, a metadata watch so a change rolls the pods, and
# the HMAC key Secret the config hash is keyed with (created once).
- apiGroups: [""]
  resources: [configmaps, secrets]
  verbs: [get, list, watch, create, patch, delete]
- apiGroups: [""]
  resources: [services]
  verbs: [get, list, watch, create, patch]
# Pods: read the network-status annotation of the API pods.
- apiGroups: [""]
  resources: [pods]
  verbs: [get, list, watch]
- apiGroups: [""]
  resources: [serviceaccounts]
  verbs: [get, create, patch]
- apiGroups: [apps]
  resources: [deployments]
  verbs: [get, list, watch, create, patch]
# The PDB exists only with replicas > 1; scaling down deletes it.
- apiGroups: [policy]
  resources: [poddisruptionbudgets]
  verbs: [get, create, patch, delete]
# Public exposure when spec.ingress is set (vanilla Kubernetes) or a Route (OpenShift).
- apiGroups: [networking.k8s.io]
  resources: [ingresses]
  verbs: [get, create, patch, delete]
- apiGroups: [route.openshift.io]
  resources: [routes]
  verbs: [get, list, watch, create, patch, delete]
# Secondary networks named in spec.networkAttachments must exist.
- apiGroups: [k8s.cni.cncf.io]
  resources: [network-attachment-definitions]
  verbs: [get]
# OpenShift: the API pods' ServiceAccount is bound to the chart's dedicated SCC (or nonroot-v2 without it).
# Binding a ClusterRole needs `bind` on exactly that ClusterRole (no other); a binding to another SCC role is
# deleted and recreated (its roleRef cannot change).
- apiGroups: [rbac.authorization.k8s.io]
  resources: [rolebindings]
  verbs: [get, create, patch, delete]
- apiGroups: [rbac.authorization.k8s.io]
  resources: [clusterroles]
  verbs: [bind]
  resourceNames: [{{ include "keystone-operator.sccClusterRole" . | quote }}]
# The catalog: KeystoneServices and KeystoneEndpoints are watched, get a finalizer (added and removed by
# patch) and their status (server-side apply). The service users' password Secrets are read with the
# Secret grant above.
- apiGroups: [keystone.openstack.org]
  resources: [keystoneservices, keystoneendpoints]
  verbs: [get, list, watch, patch]
- apiGroups: [keystone.openstack.org]
  resources: [keystoneservices/status, keystoneendpoints/status]
  verbs: [get, patch]
{{- end -}}

{{- define "keystone-operator.rules.fernet" -}}
{{ include "keystone-operator.rules.common" . }}
# Fernet and credential key Secrets: created once, then replaced with the resourceVersion read (never
# patched, never deleted); watched to notice tampering and to drive rotation.
- apiGroups: [""]
  resources: [secrets]
  verbs: [get, list, watch, create, update]
{{- end -}}

{{- define "keystone-operator.rules.db" -}}
{{ include "keystone-operator.rules.common" . }}
# db-create, db-sync and bootstrap Jobs (a new name per attempt; finished ones expire by TTL).
- apiGroups: [batch]
  resources: [jobs]
  verbs: [get, list, watch, create]
# The pods of a running Job: one that cannot start (image, config, scheduling) is reported with the kubelet's
# reason before the Job's deadline.
- apiGroups: [""]
  resources: [pods]
  verbs: [list]
# The trust-flush CronJob.
- apiGroups: [batch]
  resources: [cronjobs]
  verbs: [get, list, watch, create, patch]
# The HMAC key Secret (created once); get of the password Secret; a metadata watch so a password change
# re-runs the Jobs.
- apiGroups: [""]
  resources: [secrets]
  verbs: [get, list, watch, create]
{{- end -}}
