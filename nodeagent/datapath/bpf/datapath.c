/* Bulkhead tc programs, compiled by bcc with the map sizes and the pin
 * directory passed as -D flags (see nodeagent/datapath/loader.py).
 *
 *   from_pod     tc ingress of a pod's host-side veth (packets leaving the pod):
 *                service translation (ClusterIP:port -> a backend, per
 *                connection), source egress policy, then local delivery (with
 *                the destination's ingress policy) or VXLAN encapsulation.
 *   from_overlay tc ingress of the node's VXLAN device (external mode):
 *                the VNI is the source identity; destination ingress policy.
 *   to_pod       tc egress of a pod's host-side veth: traffic the host stack
 *                sends to the pod (source identity from the ipcache).
 *
 * Policy is evaluated only for packets that match no live conntrack entry in
 * either direction; an allowed new connection creates the entry.
 *
 * Services ("translate first, then apply policy"): a TCP/UDP packet to a
 * frontend gets its destination rewritten to a backend before anything else,
 * so endpoint/ipcache lookups, policy and conntrack all see the backend.  The
 * choice is remembered in a conntrack entry of the client -> ClusterIP tuple
 * (CT_NAT_SERVICE); the client -> backend entry carries the frontend
 * (CT_NAT_REVERSE) so replies get their source rewritten back wherever they
 * enter (from_pod on the same node, from_overlay across nodes).  A frontend
 * without backends is answered with ICMP port unreachable at once.
 */
#include <uapi/linux/bpf.h>
#include <uapi/linux/if_ether.h>
#include <uapi/linux/in.h>
#include <uapi/linux/ip.h>
#include <uapi/linux/pkt_cls.h>
#include <uapi/linux/tcp.h>
#include <uapi/linux/udp.h>
#include <uapi/linux/icmp.h>
#include "bulkhead.h"

#ifndef PIN_DIR
#error "PIN_DIR must name the versioned pin directory"
#endif
#ifndef MAX_ENDPOINTS
#define MAX_ENDPOINTS 4096
#endif
#ifndef MAX_IPCACHE
#define MAX_IPCACHE 524288
#endif
#ifndef MAX_POLICY
#define MAX_POLICY 65536
#endif
#ifndef MAX_CT
#define MAX_CT 262144
#endif
#ifndef MAX_COUNTERS
#define MAX_COUNTERS 65536
#endif
#ifndef MAX_LB_FRONTENDS
#define MAX_LB_FRONTENDS 65536
#endif
#ifndef MAX_LB_BACKENDS
#define MAX_LB_BACKENDS 262144
#endif
#ifndef FLOW_PAGES
#define FLOW_PAGES 64
#endif

#define NSEC 1000000000ULL
#define CT_TCP_LIFETIME (21600ULL * NSEC)
#define CT_OTHER_LIFETIME (60ULL * NSEC)
#define CT_CLOSE_LIFETIME (10ULL * NSEC)
#define CT_REFRESH_SLACK (1ULL * NSEC)

#define TCPF_FIN 0x01
#define TCPF_SYN 0x02
#define TCPF_RST 0x04
#define TCPF_ACK 0x10

/* Marks a packet our programs already enforced and redirected to a pod's
 * veth, so to_pod on that veth lets it through. */
#define BH_MARK_ENFORCED 0xb01dface

#define BH_HTONL(x) __builtin_bswap32(x)
#define BH_HTONS(x) __builtin_bswap16(x)

BPF_TABLE_PINNED("hash", struct ep_key, struct ep_info, endpoints, MAX_ENDPOINTS,
                 PIN_DIR "/endpoints");
BPF_TABLE_PINNED("lpm_trie", struct ipcache_key, struct ipcache_val, ipcache, MAX_IPCACHE,
                 PIN_DIR "/ipcache", BPF_F_NO_PREALLOC);
BPF_TABLE_PINNED("lpm_trie", struct policy_key, struct policy_val, policy, MAX_POLICY,
                 PIN_DIR "/policy", BPF_F_NO_PREALLOC);
BPF_TABLE_PINNED("lru_hash", struct ct_key, struct ct_val, ct, MAX_CT, PIN_DIR "/ct");
BPF_TABLE_PINNED("percpu_hash", struct counter_key, struct counter_val, counters,
                 MAX_COUNTERS, PIN_DIR "/counters");
BPF_TABLE_PINNED("array", u32, struct node_config, config, 1, PIN_DIR "/config");
BPF_TABLE_PINNED("hash", struct lb_fe_key, struct lb_fe_val, lb_frontends, MAX_LB_FRONTENDS,
                 PIN_DIR "/lb_frontends", BPF_F_NO_PREALLOC);
BPF_TABLE_PINNED("hash", struct lb_be_key, struct lb_be_val, lb_backends, MAX_LB_BACKENDS,
                 PIN_DIR "/lb_backends", BPF_F_NO_PREALLOC);
/* A connection to a ClusterIP that the L7 proxy took over: its conntrack entry holds the
 * redirect (CT_NAT_TO_PROXY), so the ClusterIP the client dialled is kept here, keyed by the
 * same client -> backend tuple, for the proxy's answers to the client (to_pod). */
BPF_TABLE_PINNED("lru_hash", struct ct_key, struct proxy_vip, proxy_vips, MAX_CT,
                 PIN_DIR "/proxy_vips");
/* Clustermesh sync grace (nodeagent/meshgrace.py): cluster id -> monotonic ns until which
 * overlay ingress lets that cluster's identities pass where nothing in the policy matched them
 * (REASON_POLICY_DEFAULT: not yet known here while the remote's state syncs). */
BPF_TABLE_PINNED("hash", u32, u64, mesh_grace, 256, PIN_DIR "/mesh_grace");
BPF_RINGBUF_OUTPUT(flows, FLOW_PAGES);

struct pkt {
    __u32 saddr;
    __u32 daddr;
    __u16 sport;
    __u16 dport;
    __u32 len;
    __u16 l4_off;       /* 0: no L4 header (not TCP/UDP, or a later fragment) */
    __u32 svc_id;       /* set once translated: the service of the frontend */
    __u8 proto;
    __u8 tcp_flags;
    __u8 icmp_type;     /* ICMP: its type, the policy key's "port" (icmps rules) */
};

/* 1 = IPv4 parsed, 0 = not IPv4, -1 = malformed. */
static __always_inline int parse(struct __sk_buff *skb, struct pkt *p)
{
    void *data = (void *)(long)skb->data;
    void *data_end = (void *)(long)skb->data_end;
    if (data + ETH_HLEN + 60 + 20 > data_end && skb->len > data_end - data) {
        /* headers may sit in paged data: make them linear (then reload).  Only then: a
         * packet that is all linear (every handshake packet, every pure ACK) has nothing to
         * pull, and the helper would still make a cloned skb (TCP's) writable, a copy. */
        bpf_skb_pull_data(skb, skb->len < ETH_HLEN + 80 ? skb->len : ETH_HLEN + 80);
        data = (void *)(long)skb->data;
        data_end = (void *)(long)skb->data_end;
    }
    struct ethhdr *eth = data;
    if ((void *)(eth + 1) > data_end)
        return -1;
    if (eth->h_proto != BH_HTONS(ETH_P_IP))
        return 0;
    struct iphdr *ip = (void *)(eth + 1);
    if ((void *)(ip + 1) > data_end)
        return -1;
    if (ip->ihl < 5)
        return -1;
    p->saddr = ip->saddr;
    p->daddr = ip->daddr;
    p->proto = ip->protocol;
    p->len = skb->len;
    if (ip->frag_off & BH_HTONS(0x1fff))
        return 1; /* later fragment: no L4 header */
    void *l4 = (void *)ip + ip->ihl * 4;
    if (p->proto == IPPROTO_TCP) {
        struct tcphdr *th = l4;
        if ((void *)(th + 1) > data_end)
            return -1;
        p->sport = th->source;
        p->dport = th->dest;
        p->tcp_flags = *((__u8 *)th + 13);
        p->l4_off = ETH_HLEN + ip->ihl * 4;
    } else if (p->proto == IPPROTO_UDP || p->proto == IPPROTO_SCTP) {
        struct udphdr *uh = l4; /* SCTP ports sit at the same offsets */
        if ((void *)(uh + 1) > data_end)
            return -1;
        p->sport = uh->source;
        p->dport = uh->dest;
        if (p->proto == IPPROTO_UDP)
            p->l4_off = ETH_HLEN + ip->ihl * 4;
    } else if (p->proto == IPPROTO_ICMP) {
        struct icmphdr *ih = l4;
        if ((void *)(ih + 1) > data_end)
            return -1;
        p->icmp_type = ih->type;
        if (ih->type == ICMP_ECHO)
            p->sport = ih->un.echo.id;
        else if (ih->type == ICMP_ECHOREPLY)
            p->dport = ih->un.echo.id;
    }
    return 1;
}

static __always_inline void count(__u32 ep_id, __u8 dir, __u8 reason, __u32 len)
{
    struct counter_key k = {};
    k.ep_id = ep_id;
    k.dir = dir;
    k.reason = reason;
    struct counter_val zero = {};
    struct counter_val *v = counters.lookup_or_try_init(&k, &zero);
    if (v) {
        v->packets += 1;
        v->bytes += len;
    }
}

static __always_inline void emit(struct pkt *p, __u32 sid, __u32 did, __u32 ep_id, __u8 dir,
                                 __u8 reason, __u8 obs)
{
    struct flow_event e = {};
    e.ts = bpf_ktime_get_ns();
    e.saddr = p->saddr;
    e.daddr = p->daddr;
    e.src_identity = sid;
    e.dst_identity = did;
    e.ep_id = ep_id;
    e.sport = p->sport;
    e.dport = p->dport;
    e.proto = p->proto;
    e.tcp_flags = p->tcp_flags;
    e.dir = dir;
    e.verdict = reason ? VERDICT_DROPPED : VERDICT_FORWARDED;
    e.reason = reason;
    e.obs = obs;
    e.svc_id = p->svc_id;
    flows.ringbuf_output(&e, sizeof(e), 0);
}

/* OBS_F_MESH_GRACE when the source identity's cluster is in its sync grace at `now`. */
static __always_inline __u8 mesh_grace_at(__u32 src_id, __u64 now)
{
    __u32 cluster = (src_id >> 16) & 0xff;
    if (!cluster)
        return 0;
    __u64 *until = mesh_grace.lookup(&cluster);
    return (until && *until > now) ? OBS_F_MESH_GRACE : 0;
}

/* A forwarded verdict of an enforced direction came from an allow entry. */
static __always_inline __u8 matched(__u32 flags, __u32 enforced)
{
    return (flags & enforced) ? OBS_F_POLICY_MATCH : 0;
}

static __always_inline int drop(struct pkt *p, __u32 sid, __u32 did, __u32 ep_id, __u8 dir,
                                __u8 reason, __u8 obs)
{
    count(ep_id, dir, reason, p->len);
    emit(p, sid, did, ep_id, dir, reason, obs);
    return TC_ACT_SHOT;
}

/* REASON_NONE when allowed; deny entries (specific peer, then any peer) are
 * looked up before allow entries (specific peer, then any peer).  ``proxy_port``
 * gets the allow entry's L7 proxy port (host order, 0: none). */
static __always_inline __u8 policy_verdict_l7(__u32 ep_id, __u32 peer, __u8 dir, struct pkt *p,
                                              __u32 *proxy_port)
{
    struct policy_val *v;
    struct policy_key k = {};
    k.prefixlen = POLICY_FIXED_BITS + 24;
    k.ep_id = BH_HTONL(ep_id);
    k.dir = dir;
    k.proto = p->proto;
    /* ICMP is keyed by its type where the port would be (as Cilium keys icmps rules) */
    k.dport = p->proto == IPPROTO_ICMP ? BH_HTONS(p->icmp_type) : p->dport;
    k.kind = KIND_DENY;
    k.peer = BH_HTONL(peer);
    if (policy.lookup(&k))
        return REASON_POLICY_DENIED;
    k.peer = 0;
    if (policy.lookup(&k))
        return REASON_POLICY_DENIED;
    k.kind = KIND_ALLOW;
    k.peer = BH_HTONL(peer);
    v = policy.lookup(&k);
    if (!v) {
        k.peer = 0;
        v = policy.lookup(&k);
    }
    if (!v)
        return REASON_POLICY_DEFAULT;
    /* TCP: the HTTP proxy or the DNS proxy; UDP: the DNS proxy (port 53 of endpoints with
     * rules.dns, nodeagent/desired.py) */
    *proxy_port = p->proto == IPPROTO_TCP || p->proto == IPPROTO_UDP ? v->proxy_port : 0;
    return REASON_NONE;
}

static __always_inline __u8 policy_verdict(__u32 ep_id, __u32 peer, __u8 dir, struct pkt *p)
{
    __u32 proxy_port = 0;
    return policy_verdict_l7(ep_id, peer, dir, p, &proxy_port);
}

static __always_inline __u64 ct_lifetime(__u8 proto, __u8 flags)
{
    if (proto != IPPROTO_TCP)
        return CT_OTHER_LIFETIME;
    if (flags & (TCPF_FIN | TCPF_RST))
        return CT_CLOSE_LIFETIME;
    return CT_TCP_LIFETIME;
}

/* Refresh a live entry's flags and deadline, at most once a second (writes are rare). */
static __always_inline void ct_touch(struct ct_val *v, struct pkt *p, __u64 now)
{
    __u8 flags = v->tcp_flags | p->tcp_flags;
    if (flags != v->tcp_flags)
        v->tcp_flags = flags;
    __u64 deadline = now + ct_lifetime(p->proto, flags);
    if (flags & (TCPF_FIN | TCPF_RST)) {
        if (v->expires > deadline)
            v->expires = deadline;
    } else if (v->expires + CT_REFRESH_SLACK < deadline) {
        v->expires = deadline;
    }
}

/* A TCP SYN (without ACK) on the entry of a connection that closed (FIN or RST seen) opens a
 * new connection on the same tuple: it is decided (and, to a ClusterIP, load-balanced) again,
 * as conntrack treats a SYN on a closing entry. */
static __always_inline int tcp_reopens(struct pkt *p, struct ct_val *v)
{
    return p->proto == IPPROTO_TCP && (p->tcp_flags & (TCPF_SYN | TCPF_ACK)) == TCPF_SYN
        && (v->tcp_flags & (TCPF_FIN | TCPF_RST));
}

/* Where a reply of a service connection must appear to come from. */
struct revnat {
    __u32 ip;           /* 0: no translation */
    __u16 port;
    __u8 proxy;         /* 1: the connection's packets in this direction go to the L7 proxy */
    __u8 pad;
    __u32 proxy_mark;   /* the mark that routes them there (CT_NAT_TO_PROXY: the entry's) */
    __u16 proxy_port;   /* network order; CT_NAT_TO_PROXY only */
};

/* -- L7 proxy: conntrack side ------------------------------------------------
 * A redirected connection's entry (client -> original destination) is
 * CT_NAT_TO_PROXY: its packets go to the proxy.  The proxy's own upstream
 * connection (client address -> original destination, made by the proxy) is
 * CT_NAT_PROXY_UPSTREAM: its replies go to the proxy, never to the client pod. */
static __always_inline void proxy_established(struct ct_key *k, struct ct_val *v, int reverse,
                                              struct revnat *rn)
{
    if (reverse && v->nat == CT_NAT_TO_PROXY) {
        /* the proxy answering a client that dialled a ClusterIP: from the ClusterIP */
        struct proxy_vip *vip = proxy_vips.lookup(k);
        if (vip) {
            rn->ip = vip->ip;
            rn->port = vip->port;
        }
    } else if (!reverse && v->nat == CT_NAT_TO_PROXY) {
        rn->proxy = 1;
        rn->proxy_mark = v->nat_ip;
        rn->proxy_port = v->nat_port;
    } else if (reverse && v->nat == CT_NAT_PROXY_UPSTREAM) {
        rn->proxy = 1;
        rn->proxy_mark = BH_MARK_TO_PROXY_INGRESS;
    }
}

/* The key of a packet's connection as its client opened it (a reply's tuple reversed). */
static __always_inline void ct_key_of(struct pkt *p, int reply, struct ct_key *k)
{
    k->saddr = reply ? p->daddr : p->saddr;
    k->daddr = reply ? p->saddr : p->daddr;
    k->sport = reply ? p->dport : p->sport;
    k->dport = reply ? p->sport : p->dport;
    k->proto = p->proto;
}

/* 1 when the packet belongs to a live connection (either direction).  A reply
 * (reverse match) of a translated service connection fills ``rn``. */
static __always_inline int ct_established(struct pkt *p, __u64 now, struct revnat *rn)
{
    struct ct_key k = {};
    ct_key_of(p, 0, &k);
    struct ct_val *v = ct.lookup(&k);
    int reverse = 0;
    if (!v) {
        ct_key_of(p, 1, &k);
        v = ct.lookup(&k);
        reverse = 1;
    }
    if (!v || v->expires < now)
        return 0;
    /* A new connection (a SYN without ACK) that reuses the tuple of one that closed (FIN or
     * RST seen) is new: policy is decided again and ct_create replaces the entry, with its own
     * translation (a connection through a ClusterIP and a direct one may share a tuple). */
    if (!reverse && tcp_reopens(p, v))
        return 0;
    ct_touch(v, p, now);
    if (reverse && v->nat == CT_NAT_REVERSE) {
        rn->ip = v->nat_ip;
        rn->port = v->nat_port;
    }
    proxy_established(&k, v, reverse, rn);
    return 1;
}

/* -- ICMP errors about a connection (conntrack's "related") ------------------ */

/* The start of an ICMP error's quoted packet: its IP header (no options) and L4 ports. */
struct icmp_quote {
    struct iphdr ip;
    __be16 sport;
    __be16 dport;
};

/* 1 when the packet is an ICMP error (unreachable, time exceeded, parameter problem) about a
 * live TCP/UDP connection: it passes as part of that connection, without a policy decision of
 * its own.  When the connection was sent to a ClusterIP, the error is rewritten to be about
 * the ClusterIP connection the client opened (the quoted destination and port, and the source
 * when the backend itself reported), so the client's socket receives it (e.g. ECONNREFUSED
 * for a UDP service whose backend has no listener).  The quoted IP header's checksum is fixed
 * along with its address, so the ICMP checksum (over it) changes by the port only.  0: not one
 * (or not rewritable: then it is decided as any other packet). */
static __always_inline int icmp_error_related(struct __sk_buff *skb, struct pkt *p, __u64 now)
{
    if (p->proto != IPPROTO_ICMP)
        return 0;
    __u8 vihl;
    if (bpf_skb_load_bytes(skb, ETH_HLEN, &vihl, 1) < 0)
        return 0;
    __u32 icmp_off = ETH_HLEN + (vihl & 0xf) * 4;
    struct icmphdr ih;
    if (bpf_skb_load_bytes(skb, icmp_off, &ih, sizeof(ih)) < 0)
        return 0;
    if (ih.type != ICMP_DEST_UNREACH && ih.type != ICMP_TIME_EXCEEDED
        && ih.type != ICMP_PARAMETERPROB)
        return 0;
    __u32 q_off = icmp_off + sizeof(struct icmphdr);
    struct icmp_quote q;
    if (bpf_skb_load_bytes(skb, q_off, &q, sizeof(q)) < 0)
        return 0;
    if (q.ip.ihl != 5 || (q.ip.protocol != IPPROTO_TCP && q.ip.protocol != IPPROTO_UDP))
        return 0;
    struct ct_key k = {};
    k.saddr = q.ip.saddr;
    k.daddr = q.ip.daddr;
    k.sport = q.sport;
    k.dport = q.dport;
    k.proto = q.ip.protocol;
    struct ct_val *v = ct.lookup(&k);
    if (!v || v->expires < now)
        return 0;
    if (v->nat != CT_NAT_REVERSE)
        return 1;
    __u32 vip = v->nat_ip;
    __u16 vport = v->nat_port;
    __u32 backend = q.ip.daddr;
    if (bpf_l3_csum_replace(skb, q_off + __builtin_offsetof(struct iphdr, check), backend, vip,
                            4) < 0)
        return 0;
    if (bpf_skb_store_bytes(skb, q_off + __builtin_offsetof(struct iphdr, daddr), &vip, 4, 0) < 0)
        return 0;
    if (bpf_l4_csum_replace(skb, icmp_off + __builtin_offsetof(struct icmphdr, checksum),
                            q.dport, vport, 2) < 0)
        return 0;
    if (bpf_skb_store_bytes(skb, q_off + __builtin_offsetof(struct icmp_quote, dport), &vport, 2,
                            0) < 0)
        return 0;
    if (p->saddr == backend) {
        if (bpf_l3_csum_replace(skb, ETH_HLEN + __builtin_offsetof(struct iphdr, check), backend,
                                vip, 4) < 0)
            return 0;
        if (bpf_skb_store_bytes(skb, ETH_HLEN + __builtin_offsetof(struct iphdr, saddr), &vip, 4,
                                0) < 0)
            return 0;
        p->saddr = vip;
    }
    return 1;
}

/* ct_established, or an ICMP error about a live connection (icmp_error_related). */
static __always_inline int ct_established_or_related(struct __sk_buff *skb, struct pkt *p,
                                                     __u64 now, struct revnat *rn)
{
    return ct_established(p, now, rn) || icmp_error_related(skb, p, now);
}

static __always_inline int ct_create(struct pkt *p, __u64 now, __u32 sid, __u32 did, __u8 nat,
                                     __u32 nat_ip, __u16 nat_port)
{
    struct ct_key k = {};
    ct_key_of(p, 0, &k);
    struct ct_val v = {};
    v.expires = now + ct_lifetime(p->proto, p->tcp_flags);
    v.created = now;
    v.src_identity = sid;
    v.dst_identity = did;
    v.tcp_flags = p->tcp_flags;
    v.nat = nat;
    v.nat_ip = nat_ip;
    v.nat_port = nat_port;
    return ct.update(&k, &v);
}

/* -- services ------------------------------------------------------------ */

/* Rewrite the source (src=1) or destination address and port of a TCP/UDP
 * packet, fixing the IP and L4 checksums. */
static __always_inline int nat_rewrite(struct __sk_buff *skb, struct pkt *p, int src,
                                       __u32 new_ip, __u16 new_port)
{
    __u32 old_ip = src ? p->saddr : p->daddr;
    __u16 old_port = src ? p->sport : p->dport;
    __u32 ip_off = ETH_HLEN + (src ? __builtin_offsetof(struct iphdr, saddr)
                                   : __builtin_offsetof(struct iphdr, daddr));
    __u32 l4 = p->l4_off;
    __u32 port_off = l4 + (src ? 0 : 2);
    __u32 csum_off;
    __u64 mangled = 0;
    if (p->proto == IPPROTO_TCP) {
        csum_off = l4 + __builtin_offsetof(struct tcphdr, check);
    } else {
        csum_off = l4 + __builtin_offsetof(struct udphdr, check);
        mangled = BPF_F_MARK_MANGLED_0;
    }
    if (bpf_l4_csum_replace(skb, csum_off, old_ip, new_ip, mangled | BPF_F_PSEUDO_HDR | 4) < 0)
        return -1;
    if (bpf_l4_csum_replace(skb, csum_off, old_port, new_port, mangled | 2) < 0)
        return -1;
    if (bpf_l3_csum_replace(skb, ETH_HLEN + __builtin_offsetof(struct iphdr, check), old_ip,
                            new_ip, 4) < 0)
        return -1;
    if (bpf_skb_store_bytes(skb, ip_off, &new_ip, 4, 0) < 0)
        return -1;
    if (bpf_skb_store_bytes(skb, port_off, &new_port, 2, 0) < 0)
        return -1;
    if (src) {
        p->saddr = new_ip;
        p->sport = new_port;
    } else {
        p->daddr = new_ip;
        p->dport = new_port;
    }
    return 0;
}

static __always_inline __u32 hash32(__u32 x)
{
    x ^= x >> 16;
    x *= 0x7feb352d;
    x ^= x >> 15;
    x *= 0x846ca68b;
    x ^= x >> 16;
    return x;
}

/* A service connection being translated: the frontend it was sent to and the
 * backend it goes to; ``fresh`` when the backend was chosen by this packet. */
struct lb_conn {
    __u32 svc_id;
    __u32 vip;
    __u16 vport;
    __u16 bport;
    __u32 bip;
    __u8 fresh;
};

#define LB_NONE 0
#define LB_TRANSLATED 1
#define LB_NO_BACKEND 2

/* One hash lookup for TCP/UDP packets that are not for a service. */
static __always_inline int lb_select(struct pkt *p, __u64 now, struct lb_conn *c)
{
    if (!p->l4_off)
        return LB_NONE;
    struct lb_fe_key fk = {};
    fk.ip = p->daddr;
    fk.port = p->dport;
    fk.proto = p->proto;
    struct lb_fe_val *fe = lb_frontends.lookup(&fk);
    if (!fe)
        return LB_NONE;
    c->svc_id = fe->svc_id;
    c->vip = p->daddr;
    c->vport = p->dport;
    struct ct_key ck = {};
    ct_key_of(p, 0, &ck);
    struct ct_val *cv = ct.lookup(&ck);
    if (cv && cv->expires >= now && cv->nat == CT_NAT_SERVICE && !tcp_reopens(p, cv)) {
        ct_touch(cv, p, now);
        c->bip = cv->nat_ip;
        c->bport = cv->nat_port;
        return LB_TRANSLATED;
    }
    __u32 count = fe->count;
    if (!count)
        return LB_NO_BACKEND;
    __u32 h = (fe->flags & LB_F_AFFINITY) ? hash32(p->saddr) : bpf_get_prandom_u32();
    struct lb_be_key bk = {};
    bk.ip = fk.ip;
    bk.port = fk.port;
    bk.proto = fk.proto;
    bk.slot = h % count;
    struct lb_be_val *be = lb_backends.lookup(&bk);
    if (!be)
        return LB_NO_BACKEND;
    c->bip = be->ip;
    c->bport = be->port;
    c->fresh = 1;
    return LB_TRANSLATED;
}

/* Remember the chosen backend under the client -> ClusterIP tuple. */
static __always_inline int lb_remember(struct lb_conn *c, __u32 client, __u16 cport, __u8 proto,
                                       __u8 tcp_flags, __u64 now, __u32 sid, __u32 did)
{
    struct pkt orig = {};
    orig.saddr = client;
    orig.sport = cport;
    orig.daddr = c->vip;
    orig.dport = c->vport;
    orig.proto = proto;
    orig.tcp_flags = tcp_flags;
    return ct_create(&orig, now, sid, did, CT_NAT_SERVICE, c->bip, c->bport);
}

static __always_inline __u16 csum_fold(__s64 sum)
{
    __u32 s = (__u32)sum;
    s = (s & 0xffff) + (s >> 16);
    s = (s & 0xffff) + (s >> 16);
    return (__u16)~s;
}

struct icmp_unreach {
    struct iphdr ip;
    struct icmphdr icmp;
    __u8 orig[28];      /* the offending IP header (no options) and 8 bytes of L4 */
};

/* Turn the packet into ICMP port unreachable from the ClusterIP and send it
 * back into the pod, so its connect() or send() fails at once. */
static __always_inline int lb_answer_unreachable(struct __sk_buff *skb, struct pkt *p)
{
    if (p->l4_off != ETH_HLEN + sizeof(struct iphdr))
        return TC_ACT_SHOT;
    __u8 macs[2 * ETH_ALEN];
    struct icmp_unreach m = {};
    if (bpf_skb_load_bytes(skb, 0, macs, sizeof(macs)) < 0)
        return TC_ACT_SHOT;
    if (bpf_skb_load_bytes(skb, ETH_HLEN, m.orig, sizeof(m.orig)) < 0)
        return TC_ACT_SHOT;
    m.ip.version = 4;
    m.ip.ihl = 5;
    m.ip.ttl = 64;
    m.ip.protocol = IPPROTO_ICMP;
    m.ip.tot_len = BH_HTONS(sizeof(m));
    m.ip.saddr = p->daddr;
    m.ip.daddr = p->saddr;
    m.ip.check = csum_fold(bpf_csum_diff(0, 0, (__be32 *)&m.ip, sizeof(m.ip), 0));
    m.icmp.type = ICMP_DEST_UNREACH;
    m.icmp.code = ICMP_PORT_UNREACH;
    m.icmp.checksum = csum_fold(
        bpf_csum_diff(0, 0, (__be32 *)&m.icmp, sizeof(m) - sizeof(m.ip), 0));
    if (bpf_skb_change_tail(skb, ETH_HLEN + sizeof(m), 0) < 0)
        return TC_ACT_SHOT;
    if (bpf_skb_store_bytes(skb, 0, macs + ETH_ALEN, ETH_ALEN, 0) < 0)
        return TC_ACT_SHOT;
    if (bpf_skb_store_bytes(skb, ETH_ALEN, macs, ETH_ALEN, 0) < 0)
        return TC_ACT_SHOT;
    if (bpf_skb_store_bytes(skb, ETH_HLEN, &m, sizeof(m), 0) < 0)
        return TC_ACT_SHOT;
    skb->mark = BH_MARK_ENFORCED;
    return bpf_redirect(skb->ifindex, 0);
}

/* Local delivery from a tc ingress hook (from_pod, from_overlay): straight into the pod's
 * namespace through the veth peer (bpf_redirect_peer), as Cilium does.  The packet is
 * received by the pod in this same pass instead of being queued to the host-side veth's
 * egress, through to_pod, and the per-CPU backlog: one queueing step less per packet, which
 * is most of what a new connection's handshake waits for.  No mark is needed (to_pod does
 * not see the packet) and none may be left (the pod's namespace would see it). */
static __always_inline int deliver_local(struct __sk_buff *skb, __u32 ifindex, __u8 *pod_mac,
                                         __u8 *host_mac)
{
    if (bpf_skb_store_bytes(skb, 0, pod_mac, ETH_ALEN, 0) < 0)
        return TC_ACT_SHOT;
    if (bpf_skb_store_bytes(skb, ETH_ALEN, host_mac, ETH_ALEN, 0) < 0)
        return TC_ACT_SHOT;
    /* Nothing runs eth_type_trans for the pod: a packet from the tunnel still has the type
     * its inner header got on the VXLAN device (not addressed to it: PACKET_OTHERHOST), which
     * the pod's IP layer would drop. */
    if (bpf_skb_change_type(skb, 0 /* PACKET_HOST */) < 0)
        return TC_ACT_SHOT;
    return bpf_redirect_peer(ifindex, 0);
}

/* -- hairpin: a pod to itself through a ClusterIP ---------------------------- */

/* The service loopback address (Cilium's, 169.254.42.1): a pod whose connection to a
 * ClusterIP was given to itself receives it from here, since a packet from its own address
 * would be dropped as martian.  Its replies come back to from_pod addressed to it. */
#define HAIRPIN_IP BH_HTONL(0xa9fe2a01)

/* The translated request (destination already the pod itself): policy as between the pod
 * and itself, the connection remembered (the client -> ClusterIP entry, and a
 * loopback -> pod entry that turns replies back), the source rewritten to the loopback
 * address, delivered to the pod. */
static __always_inline int hairpin_request(struct __sk_buff *skb, struct pkt *p,
                                           struct lb_conn *lb, struct ep_info *self, __u64 now)
{
    __u32 ep = self->ep_id, id = self->identity, flags = self->flags;
    struct pkt seen = *p; /* the tuple the pod sees */
    seen.saddr = HAIRPIN_IP;
    struct revnat rn = {};
    if (!ct_established(&seen, now, &rn)) {
        __u8 reason;
        if (flags & EP_F_EGRESS_ENFORCED) {
            reason = policy_verdict(ep, id, DIR_EGRESS, p);
            if (reason)
                return drop(p, id, id, ep, DIR_EGRESS, reason, OBS_FROM_POD);
        }
        if (flags & EP_F_INGRESS_ENFORCED) {
            reason = policy_verdict(ep, id, DIR_INGRESS, p);
            if (reason)
                return drop(p, id, id, ep, DIR_INGRESS, reason, OBS_FROM_POD);
        }
        if (ct_create(&seen, now, id, id, CT_NAT_HAIRPIN, lb->vip, lb->vport) < 0)
            return drop(p, id, id, ep, DIR_EGRESS, REASON_CT_FULL, OBS_FROM_POD);
        if (lb->fresh && lb_remember(lb, p->saddr, p->sport, p->proto, p->tcp_flags, now, id,
                                    id) < 0)
            return drop(p, id, id, ep, DIR_EGRESS, REASON_CT_FULL, OBS_FROM_POD);
        emit(p, id, id, ep, DIR_EGRESS, REASON_NONE, OBS_FROM_POD);
        emit(p, id, id, ep, DIR_INGRESS, REASON_NONE, OBS_FROM_POD);
    }
    count(ep, DIR_EGRESS, REASON_NONE, p->len);
    count(ep, DIR_INGRESS, REASON_NONE, p->len);
    if (nat_rewrite(skb, p, 1, HAIRPIN_IP, p->sport) < 0)
        return TC_ACT_SHOT;
    return deliver_local(skb, self->ifindex, self->pod_mac, self->host_mac);
}

/* A pod's reply to the loopback address: back to itself, from the ClusterIP. */
static __always_inline int hairpin_reply(struct __sk_buff *skb, struct pkt *p,
                                         struct ep_info *self, __u64 now)
{
    __u32 ep = self->ep_id, id = self->identity, pod = p->saddr;
    struct ct_key k = {};
    ct_key_of(p, 1, &k);
    struct ct_val *v = ct.lookup(&k);
    if (!p->l4_off || !v || v->expires < now || v->nat != CT_NAT_HAIRPIN)
        return drop(p, id, ID_WORLD, ep, DIR_EGRESS, REASON_UNKNOWN_DEST, OBS_FROM_POD);
    ct_touch(v, p, now);
    __u32 vip = v->nat_ip;
    __u16 vport = v->nat_port;
    count(ep, DIR_EGRESS, REASON_NONE, p->len);
    count(ep, DIR_INGRESS, REASON_NONE, p->len);
    if (nat_rewrite(skb, p, 0, pod, p->dport) < 0)
        return TC_ACT_SHOT;
    if (nat_rewrite(skb, p, 1, vip, vport) < 0)
        return TC_ACT_SHOT;
    return deliver_local(skb, self->ifindex, self->pod_mac, self->host_mac);
}

static __always_inline __u32 node_flags(__u32 *vxlan_ifindex)
{
    u32 zero = 0;
    struct node_config *cfg = config.lookup(&zero);
    if (!cfg) {
        *vxlan_ifindex = 0;
        return 0;
    }
    *vxlan_ifindex = cfg->vxlan_ifindex;
    return cfg->flags;
}

/* -- L7 proxy redirect ----------------------------------------------------
 * bpf_sk_assign, as Cilium does it (bpf/lib/proxy.h): at tc ingress a
 * redirected connection's SYN is assigned to the proxy's transparent listener
 * (127.0.0.1:proxy_port) and marked, and the node's ip rules route marked
 * packets to the local table, so the listener accepts the connection with the
 * original destination as its local address.  Its later packets carry the mark
 * only: the kernel finds the accepted socket by their own tuple.  No listener
 * (the proxy is down or restarting) drops the SYN and a packet for a socket that
 * is gone gets a reset: redirected connections fail, they never bypass the proxy. */
static __always_inline int proxy_assign_listener(struct __sk_buff *skb, struct pkt *p,
                                                 __u16 port)
{
    struct bpf_sock_tuple t = {};
    t.ipv4.saddr = p->saddr;
    t.ipv4.sport = p->sport;
    t.ipv4.daddr = BH_HTONL(0x7f000001);
    t.ipv4.dport = port;
    struct bpf_sock *sk;
    if (p->proto == IPPROTO_UDP)
        sk = bpf_sk_lookup_udp(skb, &t, sizeof(t.ipv4), BPF_F_CURRENT_NETNS, 0);
    else
        sk = bpf_sk_lookup_tcp(skb, &t, sizeof(t.ipv4), BPF_F_CURRENT_NETNS, 0);
    if (!sk)
        return -1;
    long r = -1;
    if (p->proto == IPPROTO_UDP || sk->state == BPF_TCP_LISTEN)
        r = bpf_sk_assign(skb, sk, 0);
    bpf_sk_release(sk);
    return r < 0 ? -1 : 0;
}

/* Hand a packet of a redirected connection to the node's stack, towards the
 * proxy (``port`` network order, 0: an established socket takes it); -1: drop. */
static __always_inline int to_proxy(struct __sk_buff *skb, struct pkt *p, __u32 mark,
                                    __u16 port)
{
    /* UDP has no connection socket: every datagram goes to the (transparent) UDP socket,
     * as in Cilium's DNS proxy redirect */
    if (port && (p->proto == IPPROTO_UDP || (p->tcp_flags & (TCPF_SYN | TCPF_ACK)) == TCPF_SYN)
        && proxy_assign_listener(skb, p, port) < 0)
        return -1;
    skb->mark = mark;
    /* from the overlay the inner destination MAC is not ours: let the stack take it */
    bpf_skb_change_type(skb, 0 /* PACKET_HOST */);
    return TC_ACT_OK;
}

/* A packet of a connection already redirected to the proxy (rn->proxy): to the proxy
 * again, counted for endpoint `ep` in direction `dir`; dropped when no socket takes it. */
static __always_inline int proxy_established_packet(struct __sk_buff *skb, struct pkt *p,
                                                    struct revnat *rn, __u32 src_id,
                                                    __u32 dst_id, __u32 ep, __u8 dir, __u8 obs)
{
    if (to_proxy(skb, p, rn->proxy_mark, rn->proxy_port) < 0)
        return drop(p, src_id, dst_id, ep, dir, REASON_PROXY_UNAVAILABLE, obs);
    count(ep, dir, REASON_NONE, p->len);
    return TC_ACT_OK;
}

/* The mark and proxy port of a new connection that an L7 entry redirects
 * (egress on the source's side wins over ingress of a local destination). */
static __always_inline __u16 proxy_choose(__u32 eport, __u32 iport, __u32 src_id,
                                          __u32 dst_id, __u32 *mark)
{
    if (eport) {
        /* a learnt address's identity has bit 24 set, one more than the mark holds: its
         * own mark says so, and the proxy sets the bit again */
        *mark = dst_id & BH_LOCAL_IDENTITY
            ? BH_MARK_TO_PROXY_EGRESS_LEARNT | ((dst_id & 0xffffff) << 8)
            : BH_MARK_TO_PROXY_EGRESS | (dst_id << 8);
        return BH_HTONS((__u16)eport);
    }
    if (iport) {
        *mark = BH_MARK_TO_PROXY_INGRESS | (src_id << 8);
        return BH_HTONS((__u16)iport);
    }
    return 0;
}

/* Remember (or forget) the ClusterIP of a connection redirected to the proxy, so its
 * answers to the client come from the ClusterIP as every other reply does. */
static __always_inline void proxy_vip_keep(struct pkt *p, int translated, __u32 vip,
                                           __u16 vport)
{
    struct ct_key k = {};
    ct_key_of(p, 0, &k);
    if (!translated) {
        proxy_vips.delete(&k);   /* a tuple an earlier ClusterIP connection used */
        return;
    }
    struct proxy_vip v = {.ip = vip, .port = vport};
    proxy_vips.update(&k, &v);
}

/* A packet the proxy sends (its upstream leg, or its side of a client
 * connection) leaving towards a pod or the overlay: not policed again (the
 * redirect decided it), and the upstream leg is tracked so its replies go back
 * to the proxy.  0 or -1 (conntrack full). */
static __always_inline int proxy_leg_out(struct pkt *p, __u32 sid, __u32 did,
                                         struct revnat *rn)
{
    __u64 now = bpf_ktime_get_ns();
    if (ct_established(p, now, rn))
        return 0;
    return ct_create(p, now, sid, did, CT_NAT_PROXY_UPSTREAM, 0, 0) < 0 ? -1 : 0;
}

/* The host firewall's verdict on pod <-> host traffic (defined with host_in below). */
static __always_inline __u8 host_pod_verdict(__u32 peer, __u8 dir, struct pkt *p);

int from_pod(struct __sk_buff *skb)
{
    struct pkt p = {};
    int r = parse(skb, &p);
    if (r == 0)
        return TC_ACT_OK;
    if (r < 0)
        return TC_ACT_SHOT;

    struct ep_key sk = {.ip = p.saddr};
    struct ep_info *src = endpoints.lookup(&sk);
    if (!src || src->ifindex != skb->ifindex)
        return drop(&p, ID_WORLD, 0, 0, DIR_EGRESS, REASON_UNKNOWN_SOURCE, OBS_FROM_POD);
    __u32 src_ep = src->ep_id, src_id = src->identity, src_flags = src->flags;
    if (p.daddr == HAIRPIN_IP)
        return hairpin_reply(skb, &p, src, bpf_ktime_get_ns());

    __u64 now = bpf_ktime_get_ns();
    struct lb_conn lb = {};
    int svc = lb_select(&p, now, &lb);
    p.svc_id = lb.svc_id;
    if (svc == LB_NO_BACKEND) {
        count(src_ep, DIR_EGRESS, REASON_NO_BACKEND, p.len);
        emit(&p, src_id, 0, src_ep, DIR_EGRESS, REASON_NO_BACKEND, OBS_FROM_POD);
        return lb_answer_unreachable(skb, &p);
    }
    __u32 client = p.saddr;
    __u16 cport = p.sport;
    if (svc == LB_TRANSLATED && nat_rewrite(skb, &p, 0, lb.bip, lb.bport) < 0)
        return TC_ACT_SHOT;
    if (svc == LB_TRANSLATED && p.daddr == p.saddr)
        return hairpin_request(skb, &p, &lb, src, now);

    struct ep_key dk = {.ip = p.daddr};
    struct ep_info *dst = endpoints.lookup(&dk);
    __u32 dst_ep = 0, dst_id = ID_WORLD, dst_flags = 0, dst_ifindex = 0, tunnel = 0;
    __u8 pod_mac[ETH_ALEN] = {}, host_mac[ETH_ALEN] = {};
    int known = 1;
    if (dst) {
        dst_ep = dst->ep_id;
        dst_id = dst->identity;
        dst_flags = dst->flags;
        dst_ifindex = dst->ifindex;
        __builtin_memcpy(pod_mac, dst->pod_mac, ETH_ALEN);
        __builtin_memcpy(host_mac, dst->host_mac, ETH_ALEN);
    } else {
        struct ipcache_key ik = {.prefixlen = 32, .ip = p.daddr};
        struct ipcache_val *ic = ipcache.lookup(&ik);
        if (ic) {
            dst_id = ic->identity;
            tunnel = ic->tunnel_ip;
        } else {
            known = 0;
        }
    }
    __u32 vxlan_ifindex = 0;
    __u32 cfg_flags = node_flags(&vxlan_ifindex);

    struct revnat rn = {};
    int established = ct_established_or_related(skb, &p, now, &rn);
    if (rn.ip && nat_rewrite(skb, &p, 1, rn.ip, rn.port) < 0)
        return TC_ACT_SHOT;
    if (established && rn.proxy)
        return proxy_established_packet(skb, &p, &rn, src_id, dst_id, src_ep, DIR_EGRESS,
                                        OBS_FROM_POD);
    __u32 proxy_mark = 0;
    __u16 proxy_port = 0;
    if (!established) {
        __u8 reason;
        __u32 eport = 0, iport = 0;
        if (src_flags & EP_F_EGRESS_ENFORCED) {
            reason = policy_verdict_l7(src_ep, dst_id, DIR_EGRESS, &p, &eport);
            if (reason)
                return drop(&p, src_id, dst_id, src_ep, DIR_EGRESS, reason, OBS_FROM_POD);
        }
        if (dst_flags & EP_F_INGRESS_ENFORCED) {
            reason = policy_verdict_l7(dst_ep, src_id, DIR_INGRESS, &p, &iport);
            if (reason)
                return drop(&p, src_id, dst_id, dst_ep, DIR_INGRESS, reason, OBS_FROM_POD);
        }
        if (!dst && dst_id == ID_HOST) {     /* to this node's host: its host policy */
            reason = host_pod_verdict(src_id, DIR_INGRESS, &p);
            if (reason)
                return drop(&p, src_id, dst_id, src_ep, DIR_INGRESS, reason, OBS_FROM_POD);
        }
        proxy_port = proxy_choose(eport, iport, src_id, dst_id, &proxy_mark);
        /* DNS redirected to the node's DNS proxy never leaves through this path (the proxy
         * forwards the query itself, from the node): any server the policy allows will do */
        int dns_redirect = proxy_port && p.dport == BH_HTONS(53);
        if (!known && !dns_redirect && !(cfg_flags & CFG_F_FORWARD_UNKNOWN))
            return drop(&p, src_id, dst_id, src_ep, DIR_EGRESS, REASON_UNKNOWN_DEST,
                        OBS_FROM_POD);
        __u8 nat = svc == LB_TRANSLATED ? CT_NAT_REVERSE : CT_NAT_NONE;
        __u32 nat_ip = lb.vip;
        __u16 nat_port = lb.vport;
        if (proxy_port) {
            /* the entry holds the redirect; the ClusterIP (still remembered below as the
             * client's choice of backend, under the client -> ClusterIP tuple) goes aside */
            proxy_vip_keep(&p, svc == LB_TRANSLATED, lb.vip, lb.vport);
            nat = CT_NAT_TO_PROXY;
            nat_ip = proxy_mark;
            nat_port = proxy_port;
        }
        if (ct_create(&p, now, src_id, dst_id, nat, nat_ip, nat_port) < 0)
            return drop(&p, src_id, dst_id, src_ep, DIR_EGRESS, REASON_CT_FULL, OBS_FROM_POD);
        if (lb.fresh && lb_remember(&lb, client, cport, p.proto, p.tcp_flags, now, src_id,
                                    dst_id) < 0)
            return drop(&p, src_id, dst_id, src_ep, DIR_EGRESS, REASON_CT_FULL, OBS_FROM_POD);
        if (proxy_port && to_proxy(skb, &p, proxy_mark, proxy_port) < 0)
            return drop(&p, src_id, dst_id, src_ep, DIR_EGRESS, REASON_PROXY_UNAVAILABLE,
                        OBS_FROM_POD);
        emit(&p, src_id, dst_id, src_ep, DIR_EGRESS, REASON_NONE,
             OBS_FROM_POD | matched(src_flags, EP_F_EGRESS_ENFORCED));
        if (dst && !proxy_port)
            emit(&p, src_id, dst_id, dst_ep, DIR_INGRESS, REASON_NONE,
                 OBS_FROM_POD | matched(dst_flags, EP_F_INGRESS_ENFORCED));
    }
    if (proxy_port) {
        count(src_ep, DIR_EGRESS, REASON_NONE, p.len);
        return TC_ACT_OK;
    }

    count(src_ep, DIR_EGRESS, REASON_NONE, p.len);
    if (dst) {
        count(dst_ep, DIR_INGRESS, REASON_NONE, p.len);
        return deliver_local(skb, dst_ifindex, pod_mac, host_mac);
    }
    if (tunnel && vxlan_ifindex) {
        struct bpf_tunnel_key tk = {};
        tk.remote_ipv4 = tunnel;
        tk.tunnel_id = src_id;
        tk.tunnel_ttl = 64;
        if (bpf_skb_set_tunnel_key(skb, &tk, sizeof(tk), BPF_F_ZERO_CSUM_TX) < 0)
            return drop(&p, src_id, dst_id, src_ep, DIR_EGRESS, REASON_TUNNEL_ERROR,
                        OBS_FROM_POD);
        return bpf_redirect(vxlan_ifindex, 0);
    }
    return TC_ACT_OK; /* the host itself, or (if allowed) the host's routing */
}

int from_overlay(struct __sk_buff *skb)
{
    struct bpf_tunnel_key tk = {};
    __u32 src_id = ID_WORLD;
    if (bpf_skb_get_tunnel_key(skb, &tk, sizeof(tk), 0) == 0 && tk.tunnel_id)
        src_id = tk.tunnel_id;

    struct pkt p = {};
    int r = parse(skb, &p);
    if (r == 0)
        return TC_ACT_OK;
    if (r < 0)
        return TC_ACT_SHOT;

    struct ep_key dk = {.ip = p.daddr};
    struct ep_info *dst = endpoints.lookup(&dk);
    if (!dst)
        return TC_ACT_OK; /* not a pod of this node: the host stack decides */
    __u32 dst_ep = dst->ep_id, dst_id = dst->identity, dst_flags = dst->flags;
    __u32 dst_ifindex = dst->ifindex;
    __u8 pod_mac[ETH_ALEN], host_mac[ETH_ALEN];
    __builtin_memcpy(pod_mac, dst->pod_mac, ETH_ALEN);
    __builtin_memcpy(host_mac, dst->host_mac, ETH_ALEN);

    __u64 now = bpf_ktime_get_ns();
    struct revnat rn = {};
    int established = ct_established_or_related(skb, &p, now, &rn);
    if (rn.ip && nat_rewrite(skb, &p, 1, rn.ip, rn.port) < 0)
        return TC_ACT_SHOT;
    if (established && rn.proxy)
        return proxy_established_packet(skb, &p, &rn, src_id, dst_id, dst_ep, DIR_INGRESS,
                                        OBS_FROM_OVERLAY);
    if (!established) {
        __u32 iport = 0, proxy_mark = 0;
        __u8 grace = 0;
        if (dst_flags & EP_F_INGRESS_ENFORCED) {
            __u8 reason = policy_verdict_l7(dst_ep, src_id, DIR_INGRESS, &p, &iport);
            if (reason == REASON_POLICY_DEFAULT && (grace = mesh_grace_at(src_id, now)))
                reason = REASON_NONE;
            if (reason)
                return drop(&p, src_id, dst_id, dst_ep, DIR_INGRESS, reason, OBS_FROM_OVERLAY);
        }
        __u16 proxy_port = proxy_choose(0, iport, src_id, dst_id, &proxy_mark);
        if (ct_create(&p, now, src_id, dst_id, proxy_port ? CT_NAT_TO_PROXY : CT_NAT_NONE,
                      proxy_mark, proxy_port) < 0)
            return drop(&p, src_id, dst_id, dst_ep, DIR_INGRESS, REASON_CT_FULL,
                        OBS_FROM_OVERLAY);
        if (proxy_port) {
            proxy_vip_keep(&p, 0, 0, 0);   /* the client's node translates the replies */
            if (to_proxy(skb, &p, proxy_mark, proxy_port) < 0)
                return drop(&p, src_id, dst_id, dst_ep, DIR_INGRESS, REASON_PROXY_UNAVAILABLE,
                            OBS_FROM_OVERLAY);
            emit(&p, src_id, dst_id, dst_ep, DIR_INGRESS, REASON_NONE,
                 OBS_FROM_OVERLAY | (grace ? grace : matched(dst_flags, EP_F_INGRESS_ENFORCED)));
            count(dst_ep, DIR_INGRESS, REASON_NONE, p.len);
            return TC_ACT_OK;
        }
        emit(&p, src_id, dst_id, dst_ep, DIR_INGRESS, REASON_NONE,
             OBS_FROM_OVERLAY | (grace ? grace : matched(dst_flags, EP_F_INGRESS_ENFORCED)));
    }
    count(dst_ep, DIR_INGRESS, REASON_NONE, p.len);
    return deliver_local(skb, dst_ifindex, pod_mac, host_mac);
}

int to_pod(struct __sk_buff *skb)
{
    if (skb->mark == BH_MARK_ENFORCED) {
        skb->mark = 0;
        return TC_ACT_OK;
    }
    struct pkt p = {};
    int r = parse(skb, &p);
    if (r == 0)
        return TC_ACT_OK;
    if (r < 0)
        return TC_ACT_SHOT;
    struct ep_key dk = {.ip = p.daddr};
    struct ep_info *dst = endpoints.lookup(&dk);
    if (!dst)
        return TC_ACT_OK;
    __u32 dst_ep = dst->ep_id, dst_id = dst->identity, dst_flags = dst->flags;

    __u32 src_id = ID_WORLD;
    struct ipcache_key ik = {.prefixlen = 32, .ip = p.saddr};
    struct ipcache_val *ic = ipcache.lookup(&ik);
    if (ic)
        src_id = ic->identity;

    if ((skb->mark & BH_MARK_PROXY_MASK) == BH_MARK_PROXY_OUT) {
        skb->mark = 0;
        struct revnat out = {};
        if (proxy_leg_out(&p, src_id, dst_id, &out) < 0)
            return drop(&p, src_id, dst_id, dst_ep, DIR_INGRESS, REASON_CT_FULL, OBS_TO_POD);
        /* the proxy answering a client that dialled a ClusterIP: from the ClusterIP */
        if (out.ip && nat_rewrite(skb, &p, 1, out.ip, out.port) < 0)
            return TC_ACT_SHOT;
        count(dst_ep, DIR_INGRESS, REASON_NONE, p.len);
        return TC_ACT_OK;
    }

    __u64 now = bpf_ktime_get_ns();
    struct revnat rn = {};
    int established = ct_established_or_related(skb, &p, now, &rn);
    if (rn.ip && nat_rewrite(skb, &p, 1, rn.ip, rn.port) < 0)
        return TC_ACT_SHOT;
    if (!established) {
        if (src_id == ID_HOST) {            /* from this node's host: its host policy */
            __u8 hreason = host_pod_verdict(dst_id, DIR_EGRESS, &p);
            if (hreason)
                return drop(&p, src_id, dst_id, dst_ep, DIR_EGRESS, hreason, OBS_TO_POD);
        }
        if (dst_flags & EP_F_INGRESS_ENFORCED) {
            __u32 iport = 0;
            __u8 reason = policy_verdict_l7(dst_ep, src_id, DIR_INGRESS, &p, &iport);
            if (!reason && iport)
                reason = REASON_PROXY_UNAVAILABLE; /* the host's own traffic cannot be
                                                    * proxied here: fail closed */
            if (reason)
                return drop(&p, src_id, dst_id, dst_ep, DIR_INGRESS, reason, OBS_TO_POD);
        }
        if (ct_create(&p, now, src_id, dst_id, CT_NAT_NONE, 0, 0) < 0)
            return drop(&p, src_id, dst_id, dst_ep, DIR_INGRESS, REASON_CT_FULL, OBS_TO_POD);
        emit(&p, src_id, dst_id, dst_ep, DIR_INGRESS, REASON_NONE,
             OBS_TO_POD | matched(dst_flags, EP_F_INGRESS_ENFORCED));
    }
    count(dst_ep, DIR_INGRESS, REASON_NONE, p.len);
    return TC_ACT_OK;
}

/* tc egress of the node's VXLAN device: packets the node's own stack routes
 * into the overlay (the L7 proxy's upstream legs and its answers to clients on
 * other nodes; see the ip rules in nodeagent/datapath/proxyroutes.py) get their
 * tunnel key here, with the source's identity from the ipcache.  Packets that
 * from_pod encapsulated already carry a key and pass untouched. */
int to_overlay(struct __sk_buff *skb)
{
    struct bpf_tunnel_key tk = {};
    if (bpf_skb_get_tunnel_key(skb, &tk, sizeof(tk), 0) == 0)
        return TC_ACT_OK;
    struct pkt p = {};
    if (parse(skb, &p) <= 0)
        return TC_ACT_SHOT;
    struct ipcache_key ik = {.prefixlen = 32, .ip = p.daddr};
    struct ipcache_val *ic = ipcache.lookup(&ik);
    if (!ic || !ic->tunnel_ip)
        return TC_ACT_SHOT;
    __u32 tunnel = ic->tunnel_ip, dst_id = ic->identity, src_id = ID_HOST;
    ik.ip = p.saddr;
    ic = ipcache.lookup(&ik);
    if (ic)
        src_id = ic->identity;
    struct revnat out = {};
    if ((skb->mark & BH_MARK_PROXY_MASK) == BH_MARK_PROXY_OUT
        && proxy_leg_out(&p, src_id, dst_id, &out) < 0)
        return TC_ACT_SHOT;
    tk.remote_ipv4 = tunnel;
    tk.tunnel_id = src_id;
    tk.tunnel_ttl = 64;
    if (bpf_skb_set_tunnel_key(skb, &tk, sizeof(tk), BPF_F_ZERO_CSUM_TX) < 0)
        return TC_ACT_SHOT;
    return TC_ACT_OK;
}

/* -- host firewall (host policies: nodeSelector) ----------------------------
 *
 *   host_in   tc ingress of the node's underlay interface
 *   host_out  tc egress of the node's underlay interface
 *
 * The node's own traffic is checked against the host's entries (host_policy,
 * keyed like `policy`: ep_id holds the peer NODE id of a fromNodes/toNodes
 * entry, 0 for every other entry).  The peer of an underlay packet is the node
 * whose address it is (host_peers: remote-node, or host for the node's own
 * addresses), else the ipcache's identity of the address (CIDR identities), else
 * world.  Exempt whatever the policy says (the escape hatch):
 * the VXLAN tunnel (UDP 8472 either way), the control-plane addresses the agent
 * writes into host_exempt, replies of tracked connections, non-IPv4 (ARP), and
 * pod traffic (a local endpoint's own programs decide it).  Every program here
 * keeps its maps apart from the endpoint ones, so the endpoint layouts are
 * unchanged. */
#define HOST_F_INGRESS 1
#define HOST_F_EGRESS 2
#define HOST_VXLAN_PORT BH_HTONS(8472)
struct host_state {
    __u32 flags;        /* HOST_F_*: directions the host policy enforces */
    __u32 pad;
};
struct host_peer {
    __u32 identity;     /* ID_REMOTE_NODE, or ID_HOST for the node's own addresses */
    __u32 node_id;
};
struct host_exempt_key {
    __u32 ip;           /* network order */
    __u16 port;         /* network order */
    __u8 proto;
    __u8 pad;
};
BPF_TABLE_PINNED("lpm_trie", struct policy_key, struct policy_val, host_policy, 16384,
                 PIN_DIR "/host_policy", BPF_F_NO_PREALLOC);
BPF_TABLE_PINNED("hash", __u32, struct host_peer, host_peers, 4096, PIN_DIR "/host_peers");
BPF_TABLE_PINNED("hash", struct host_exempt_key, __u32, host_exempt, 256,
                 PIN_DIR "/host_exempt");
BPF_TABLE_PINNED("array", __u32, struct host_state, host_state, 1, PIN_DIR "/host_state");

static __always_inline int host_lookup(__u32 node_id, __u32 peer, __u8 kind, __u8 dir,
                                       struct pkt *p)
{
    struct policy_key k = {};
    k.prefixlen = POLICY_FIXED_BITS + 24;
    k.dir = dir;
    k.kind = kind;
    k.proto = p->proto;
    k.dport = p->proto == IPPROTO_ICMP ? BH_HTONS(p->icmp_type) : p->dport;
    if (node_id) {
        k.ep_id = BH_HTONL(node_id);
        k.peer = BH_HTONL(peer);
        if (host_policy.lookup(&k))
            return 1;
    }
    k.ep_id = 0;
    k.peer = BH_HTONL(peer);
    if (host_policy.lookup(&k))
        return 1;
    k.peer = 0;
    return host_policy.lookup(&k) != 0;
}

static __always_inline __u8 host_verdict(__u32 node_id, __u32 peer, __u8 dir, struct pkt *p)
{
    if (host_lookup(node_id, peer, KIND_DENY, dir, p))
        return REASON_POLICY_DENIED;
    if (host_lookup(node_id, peer, KIND_ALLOW, dir, p))
        return REASON_NONE;
    return REASON_POLICY_DEFAULT;
}

static __always_inline __u8 host_pod_verdict(__u32 peer, __u8 dir, struct pkt *p)
{
    __u32 zero = 0;
    struct host_state *st = host_state.lookup(&zero);
    if (!st || !(st->flags & (dir == DIR_INGRESS ? HOST_F_INGRESS : HOST_F_EGRESS)))
        return REASON_NONE;
    /* the node's own services for pods (the agent's DNS server) are exempt like the
     * control plane: the agent writes them into host_exempt */
    struct host_exempt_key ek = {.ip = p->daddr, .port = p->dport, .proto = p->proto};
    if (dir == DIR_INGRESS && host_exempt.lookup(&ek))
        return REASON_NONE;
    return host_verdict(0, peer, dir, p);
}

/* `ingress`: the packet comes in (its source is the peer), else it goes out. */
static __always_inline int host_firewall(struct __sk_buff *skb, int ingress)
{
    struct pkt p = {};
    if (parse(skb, &p) <= 0)
        return TC_ACT_OK;
    __u32 zero = 0;
    struct host_state *st = host_state.lookup(&zero);
    if (!st || !st->flags)
        return TC_ACT_OK;
    __u32 flags = st->flags;
    if (p.proto == IPPROTO_UDP && (p.dport == HOST_VXLAN_PORT || p.sport == HOST_VXLAN_PORT))
        return TC_ACT_OK;
    struct host_exempt_key ek = {};
    ek.ip = ingress ? p.saddr : p.daddr;
    ek.port = ingress ? p.sport : p.dport;
    ek.proto = p.proto;
    if (host_exempt.lookup(&ek))
        return TC_ACT_OK;
    __u32 local = ingress ? p.daddr : p.saddr;
    struct ep_key lk = {.ip = local};
    if (endpoints.lookup(&lk))
        return TC_ACT_OK;
    __u64 now = bpf_ktime_get_ns();
    struct revnat rn = {};
    if (ct_established(&p, now, &rn))
        return TC_ACT_OK;
    __u32 remote = ingress ? p.saddr : p.daddr;
    struct host_peer *hp = host_peers.lookup(&remote);
    __u32 peer = hp ? hp->identity : ID_WORLD, node_id = hp ? hp->node_id : 0;
    if (!hp) {   /* not a node: the ipcache's identity (CIDR identities), as for pods */
        struct ipcache_key ik = {.prefixlen = 32, .ip = remote};
        struct ipcache_val *ic = ipcache.lookup(&ik);
        if (ic)
            peer = ic->identity;
    }
    __u8 dir = ingress ? DIR_INGRESS : DIR_EGRESS;
    __u32 sid = ingress ? peer : ID_HOST, did = ingress ? ID_HOST : peer;
    int enforced = (flags & (ingress ? HOST_F_INGRESS : HOST_F_EGRESS)) != 0;
    if (enforced) {
        __u8 reason = host_verdict(node_id, peer, dir, &p);
        if (reason)   /* a flow event like the endpoints' drops (ep_id 0: the host) */
            return drop(&p, sid, did, 0, dir, reason, OBS_HOST_FIREWALL);
    }
    /* Tracked either way, so replies pass the direction that is enforced. */
    ct_create(&p, now, sid, did, CT_NAT_NONE, 0, 0);
    /* The host firewall's verdicts only: a new connection an enforced direction allowed
     * (a policy-verdict flow, as for endpoints); the other direction's are not its own. */
    if (enforced)
        emit(&p, sid, did, 0, dir, REASON_NONE, OBS_HOST_FIREWALL | OBS_F_POLICY_MATCH);
    return TC_ACT_OK;
}

int host_in(struct __sk_buff *skb)
{
    return host_firewall(skb, 1);
}

int host_out(struct __sk_buff *skb)
{
    return host_firewall(skb, 0);
}
