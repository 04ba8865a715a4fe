#!/bin/sh
# Nightly launcher of the CronJob fallback: copy the suspended template RayJob into a new, running
# RayJob, wait until it finishes, prune old nightly RayJobs, and exit with the night's result
# (0 only when the Ray job SUCCEEDED), so the Kubernetes Job records it.
#
# Environment: TEMPLATE (template RayJob name, ends in -template), KEEP (finished nightly RayJobs to
# keep, default 14), POLL_SECONDS (default 60), NAMESPACE (default: the pod's own namespace).
# Needs kubectl; the ServiceAccount may get/list/create/delete rayjobs (rbac.yaml).
set -eu

: "${TEMPLATE:?set TEMPLATE to the template RayJob name}"
KEEP="${KEEP:-14}"
POLL_SECONDS="${POLL_SECONDS:-60}"
ns="${NAMESPACE:-$(cat /var/run/secrets/kubernetes.io/serviceaccount/namespace)}"
schedule="${TEMPLATE%-template}"
# Same naming as RayCronJob: <schedule name>-<minutes since the epoch>.
name="${schedule}-$(( $(date -u +%s) / 60 ))"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

kubectl -n "$ns" get rayjob "$TEMPLATE" -o json > "$work/template.json"
# A merge patch turns the stored template into a new object: new name and label, no server-set
# metadata or status, not suspended.
cat > "$work/patch.json" <<EOF
{"metadata": {"name": "$name", "labels": {"simcit.io/launched-by": "$schedule"},
              "annotations": null, "uid": null, "resourceVersion": null, "generation": null,
              "creationTimestamp": null, "managedFields": null, "finalizers": null, "ownerReferences": null},
 "spec": {"suspend": false},
 "status": null}
EOF
kubectl patch --local -f "$work/template.json" --type merge --patch-file "$work/patch.json" -o json > "$work/rayjob.json"
kubectl -n "$ns" create -f "$work/rayjob.json"
echo "created RayJob $name from $TEMPLATE"

state=""
while :; do
  # A failed read (API server hiccup) is retried; the Job's activeDeadlineSeconds bounds the loop.
  state="$(kubectl -n "$ns" get rayjob "$name" -o jsonpath='{.status.jobDeploymentStatus}' || true)"
  case "$state" in
    Complete|Failed) break ;;
  esac
  sleep "$POLL_SECONDS"
done
status="$(kubectl -n "$ns" get rayjob "$name" -o jsonpath='{.status.jobStatus}')"
echo "RayJob $name finished: jobDeploymentStatus=$state jobStatus=$status"

# Keep the newest $KEEP nightly RayJobs (their clusters are already gone: shutdownAfterJobFinishes).
kubectl -n "$ns" get rayjob -l "simcit.io/launched-by=$schedule" --sort-by=.metadata.creationTimestamp -o name \
  | awk -v keep="$KEEP" '{ names[NR] = $0 } END { for (i = 1; i <= NR - keep; i++) print names[i] }' \
  | while read -r old; do kubectl -n "$ns" delete "$old"; done

if [ "$state" = Complete ] && [ "$status" = SUCCEEDED ]; then
  exit 0
fi
echo "nightly re-tokenization failed: kubectl -n $ns describe rayjob $name; kubectl -n $ns logs job/$name" >&2
exit 1
