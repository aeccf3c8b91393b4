# Shared by the bench scripts (source it): a namespace holding COUNT client
# TIME_WAIT sockets over loopback, 30,000 per destination port.
#   fill_namespace NAME COUNT CHURN_BINARY
fill_namespace() {
    local ns=$1 count=$2 churn=$3 per_target=30000 targets=() i
    ip netns add "$ns"
    ip -n "$ns" link set lo up
    # Loopback TIME_WAITs must not be reused (a fresh namespace has tw_reuse=2),
    # the bucket cap must not clip them, a stray RST must not kill them, and a
    # wide range keeps connect() fast.
    ip netns exec "$ns" sh -c '
        echo 0 > /proc/sys/net/ipv4/tcp_tw_reuse
        echo 4000000 > /proc/sys/net/ipv4/tcp_max_tw_buckets
        echo 1 > /proc/sys/net/ipv4/tcp_rfc1337
        echo "1024 65535" > /proc/sys/net/ipv4/ip_local_port_range'
    for ((i = 0; i < (count + per_target - 1) / per_target; i++)); do
        targets+=(--target "127.0.0.1:$((7000 + i))")
    done
    echo "building $count TIME_WAIT sockets over ${#targets[@]} destinations…" >&2
    "$churn" --netns "$ns" "${targets[@]}" --count "$count" --threads 2 --max-seconds 50 >&2
}
