#!/usr/bin/env bash
# The shell baseline for benches/failover.rs: a stepped failover done the way
# Lunar's scripted tasks did it, one CLI call at a time. Per step:
#   1. per cluster: check the cluster's identity (kubectl get configmap), then
#      set its weight (kubectl patch routingweight --type merge);
#   2. (external-dns copies the weights to Route53: the $EXTERNAL_DNS hook);
#   3. check that Route53 carries every cluster's weight
#      (aws route53 list-resource-record-sets).
#
# Usage: baseline-failover.sh STEP...   each STEP is the weights in CLUSTERS
#        order, e.g. baseline-failover.sh 90,0,10 50,0,50 0,0,100
# Environment:
#   KUBECONFIG        kubeconfig with one context per cluster
#   CLUSTERS          "context=cluster-name ..." (space-separated)
#   ZONE_ID           Route53 hosted zone id
#   ROUTE53_ENDPOINT  e.g. http://127.0.0.1:5000 (moto); AWS_* credentials too
#   KUBE_CACHE_DIR    kubectl --cache-dir (optional; default ~/.kube/cache)
#   EXTERNAL_DNS      optional command run as `$EXTERNAL_DNS STEP_NUMBER`
#                     before each Route53 check: plays external-dns. Its time
#                     is not the scripted task's, so the script adds it up and
#                     prints it last as `external_dns_us=N` for the caller to
#                     subtract.
set -euo pipefail

: "${KUBECONFIG:?}" "${CLUSTERS:?}" "${ZONE_ID:?}" "${ROUTE53_ENDPOINT:?}"
PREFIX="external-dns.alpha.kubernetes.io/"
read -r -a clusters <<<"$CLUSTERS"
external_dns_us=0

kc() {
    local context=$1
    shift
    kubectl --context "$context" --cache-dir "${KUBE_CACHE_DIR:-$HOME/.kube/cache}" \
        --request-timeout=20s "$@"
}

check_identity() {
    local context=$1 name=$2 actual
    actual="$(kc "$context" -n operators get configmap cluster-identity \
        -o 'jsonpath={.data.clusterName}')"
    if [[ "$actual" != "$name" ]]; then
        echo "context $context is $actual, not $name: refusing" >&2
        exit 1
    fi
}

set_weight() {
    local context=$1 name=$2 weight=$3
    kc "$context" -n operators patch routingweight "$name" --type merge -p \
        "{\"spec\":{\"annotations\":[{\"key\":\"${PREFIX}aws-weight\",\"value\":\"$weight\"},{\"key\":\"${PREFIX}set-identifier\",\"value\":\"$name\"}]}}" \
        >/dev/null
}

# Every weighted A record of cluster NAME must carry WEIGHT.
check_route53() {
    local -a weights=("$@")
    local sets i name
    sets="$(aws route53 list-resource-record-sets --hosted-zone-id "$ZONE_ID" \
        --endpoint-url "$ROUTE53_ENDPOINT" --output text \
        --query "ResourceRecordSets[?Type=='A'].[Name,SetIdentifier,Weight]")"
    for i in "${!clusters[@]}"; do
        name="${clusters[$i]#*=}"
        if ! awk -v id="$name" -v w="${weights[$i]}" \
            '$2 == id { seen = 1; if ($3 != w) bad = 1 } END { exit !(seen && !bad) }' \
            <<<"$sets"; then
            echo "Route53 does not carry weight ${weights[$i]} for $name yet" >&2
            exit 1
        fi
    done
}

# $EPOCHREALTIME ("seconds.micros") in microseconds.
now_us() { local t=$EPOCHREALTIME; echo $((10#${t/./})); }

step_number=0
for step in "$@"; do
    step_number=$((step_number + 1))
    IFS=, read -r -a weights <<<"$step"
    if [[ ${#weights[@]} -ne ${#clusters[@]} ]]; then
        echo "step $step: ${#weights[@]} weights for ${#clusters[@]} clusters" >&2
        exit 2
    fi
    for i in "${!clusters[@]}"; do
        context="${clusters[$i]%%=*}"
        name="${clusters[$i]#*=}"
        check_identity "$context" "$name"
        set_weight "$context" "$name" "${weights[$i]}"
    done
    if [[ -n "${EXTERNAL_DNS:-}" ]]; then
        started=$(now_us)
        $EXTERNAL_DNS "$step_number"
        external_dns_us=$((external_dns_us + $(now_us) - started))
    fi
    check_route53 "${weights[@]}"
    echo "step $step_number/$#: $step applied and carried by Route53"
done
echo "external_dns_us=$external_dns_us"
