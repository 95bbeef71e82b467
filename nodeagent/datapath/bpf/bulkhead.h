/* Bulkhead map layouts, shared by the tc programs (datapath.c) and mirrored by
 * nodeagent/datapath/layout.py.  Any change to a struct here is a new layout:
 * bump BH_LAYOUT_VERSION (and LAYOUT_VERSION in layout.py) so a restarted agent
 * pins fresh maps instead of misreading old ones (pinned maps carry no schema).
 *
 * Byte orders: IPv4 addresses in keys are network order (as in the packet);
 * tunnel_ip is host order (what bpf_skb_set_tunnel_key wants); policy keys are
 * big-endian throughout because an LPM trie matches bit prefixes MSB first.
 */
#ifndef BULKHEAD_H
#define BULKHEAD_H

#define BH_LAYOUT_VERSION 1

/* Reserved identities. */
#define ID_ANY 0
#define ID_HOST 1
#define ID_WORLD 2
#define ID_REMOTE_NODE 6

/* ep_info.flags */
#define EP_F_INGRESS_ENFORCED 1
#define EP_F_EGRESS_ENFORCED 2

/* node_config.flags */
#define CFG_F_FORWARD_UNKNOWN 1 /* hand packets to unknown destinations to the host stack */

/* Directions (policy keys, counters, flow events). */
#define DIR_INGRESS 0
#define DIR_EGRESS 1

/* policy_key.kind: deny entries live in their own key space so the datapath
 * can look them up first. */
#define KIND_DENY 0
#define KIND_ALLOW 1

/* Verdicts and drop reasons (counters and flow events). */
#define VERDICT_FORWARDED 0
#define VERDICT_DROPPED 1

#define REASON_NONE 0
#define REASON_POLICY_DENIED 1   /* a deny entry matched */
#define REASON_POLICY_DEFAULT 2  /* direction enforced, nothing allows it */
#define REASON_UNKNOWN_DEST 3    /* destination not an endpoint nor in the ipcache */
#define REASON_UNKNOWN_SOURCE 4  /* source address is not the endpoint's */
#define REASON_TUNNEL_ERROR 5    /* setting the tunnel key failed */
#define REASON_CT_FULL 6         /* could not create a conntrack entry */
#define REASON_NO_BACKEND 7      /* a service frontend without backends (answered ICMP) */
#define REASON_PROXY_UNAVAILABLE 16 /* an L7 entry redirects to a proxy that has no listener */

/* Observation points (flow events). */
#define OBS_FROM_POD 0
#define OBS_FROM_OVERLAY 1
#define OBS_TO_POD 2
#define OBS_HOST_FIREWALL 3  /* host_in/host_out: the node's own traffic (ep_id 0) */
/* Or'ed into a flow event's obs: an allow entry of an enforced direction let the
 * connection through (Hubble's policy-verdict:L3-L4); without it nothing decided. */
#define OBS_F_POLICY_MATCH 0x80
#define OBS_F_MESH_GRACE 0x40   /* passed under a clustermesh sync grace (no policy match) */

/* Local endpoints: pod IPv4 -> where and who it is. */
struct ep_key {
    __u32 ip;
};
struct ep_info {
    __u32 ep_id;
    __u32 ifindex;      /* host-side veth */
    __u32 identity;
    __u32 flags;        /* EP_F_* */
    __u8 pod_mac[6];
    __u8 host_mac[6];
};

/* ipcache: IPv4 prefix -> identity and tunnel endpoint (LPM trie). */
struct ipcache_key {
    __u32 prefixlen;
    __u32 ip;
};
struct ipcache_val {
    __u32 identity;
    __u32 tunnel_ip;    /* host order; 0 = not behind a tunnel */
};

/* Policy: one LPM trie for all local endpoints.  Fixed part (always inside
 * the prefix): ep_id, peer, pad, dir, kind = 88 bits; then proto (8) and
 * dport (16).  prefixlen 88 = any protocol/port, 96 = one protocol, all
 * ports, 96+k = a port prefix of k bits (port ranges are split into aligned
 * power-of-two blocks).  ICMP (proto 1): dport holds the ICMP type (icmps
 * rules), always an exact 112-bit key; no such key existed before, so the
 * layout (and BH_LAYOUT_VERSION) is unchanged. */
struct policy_key {
    __u32 prefixlen;
    __u32 ep_id;        /* big-endian */
    __u32 peer;         /* big-endian identity, 0 = any */
    __u8 pad;
    __u8 dir;
    __u8 kind;
    __u8 proto;
    __u16 dport;        /* big-endian */
    __u16 pad2;
};
struct policy_val {
    __u32 verdict;      /* KIND_* of the entry that produced it */
    __u32 proxy_port;   /* host order; an allow entry whose connections go to the node's
                         * L7 proxy listening on this port (0: none).  Was zeroed padding. */
};
#define POLICY_FIXED_BITS 88

/* Services.  lb_frontends: (ClusterIP, port, protocol) -> service id, backend
 * count and flags; lb_backends: (the same frontend, slot 0..count-1) -> one
 * backend.  Backends are keyed by frontend rather than by service id alone
 * because each port of a service has its own backend set (target ports).
 * Addresses and ports are network order. */
#define LB_F_AFFINITY 1 /* sessionAffinity: ClientIP (the backend follows the client IP) */

struct lb_fe_key {
    __u32 ip;
    __u16 port;
    __u8 proto;
    __u8 pad;
};
struct lb_fe_val {
    __u32 svc_id;
    __u16 count;        /* backends in slots 0..count-1; 0 = no backend */
    __u8 flags;         /* LB_F_* */
    __u8 pad;
};
struct lb_be_key {
    __u32 ip;
    __u16 port;
    __u8 proto;
    __u8 pad;
    __u32 slot;         /* host order */
};
struct lb_be_val {
    __u32 ip;
    __u16 port;
    __u16 pad;
};

/* ct_val.nat */
#define CT_NAT_NONE 0
#define CT_NAT_SERVICE 1 /* entry of client -> ClusterIP: nat_ip:nat_port = the chosen backend */
#define CT_NAT_REVERSE 2 /* entry of client -> backend: replies' source becomes nat_ip:nat_port */
#define CT_NAT_TO_PROXY 3 /* client -> original destination, redirected to the L7 proxy:
                           * nat_ip = the mark given to its packets, nat_port = proxy port */
#define CT_NAT_PROXY_UPSTREAM 4 /* the proxy's own connection to the original destination
                                 * (source = the client's address): replies go to the proxy */

/* L7 proxy marks (skb->mark, low byte; the rest of a to-proxy mark is the peer identity).
 * The node's ip rules route TO_PROXY marks to the local table (so the packet reaches the
 * proxy's socket) and PROXY_OUT marks (set by the proxy on all its sockets) around it. */
#define BH_MARK_PROXY_MASK 0xff
#define BH_MARK_TO_PROXY_INGRESS 0xb2  /* | peer identity << 8: the peer is the source */
#define BH_MARK_TO_PROXY_EGRESS 0xb3   /* | peer identity << 8: the peer is the destination */
#define BH_MARK_PROXY_OUT 0xb4         /* sent by the proxy (upstream legs and its replies) */
#define BH_MARK_TO_PROXY_EGRESS_LEARNT 0xb6 /* | (peer identity & 0xffffff) << 8: the peer is
                                             * the destination, an address the DNS proxy
                                             * learnt (node-local identity: bit 24 set) */
#define BH_LOCAL_IDENTITY (1u << 24)   /* bit 24: a node-local identity (nodeagent.fqdn) */
#define CT_NAT_HAIRPIN 5 /* entry of loopback -> pod, a pod to itself through a ClusterIP:
                          * replies' source becomes nat_ip:nat_port, their destination the pod */

/* Connection tracking: 5-tuple of the original direction. ICMP echo uses
 * (id, 0) for requests and (0, id) for replies so the reverse tuple matches. */
struct ct_key {
    __u32 saddr;
    __u32 daddr;
    __u16 sport;
    __u16 dport;
    __u8 proto;
    __u8 pad[3];
};
struct ct_val {
    __u64 expires;      /* bpf_ktime_get_ns() deadline */
    __u64 created;
    __u32 src_identity;
    __u32 dst_identity;
    __u8 tcp_flags;     /* OR of flags seen */
    __u8 nat;           /* CT_NAT_* (was zeroed padding in entries written before services:
                         * they read as CT_NAT_NONE, so the layout version stayed 1) */
    __u16 nat_port;     /* network order */
    __u32 nat_ip;       /* network order */
};

/* proxy_vips: the ClusterIP (network order) a proxied connection's client dialled. */
struct proxy_vip {
    __u32 ip;
    __u16 port;
    __u16 pad;
};

/* Per-endpoint counters. */
struct counter_key {
    __u32 ep_id;
    __u8 dir;
    __u8 reason;        /* REASON_NONE = forwarded */
    __u16 pad;
};
struct counter_val {
    __u64 packets;
    __u64 bytes;
};

/* Node configuration: one entry at index 0. */
struct node_config {
    __u32 vxlan_ifindex;
    __u32 flags;        /* CFG_F_* */
};

/* Ring-buffer flow event: one per new-connection verdict and per drop. */
struct flow_event {
    __u64 ts;
    __u32 saddr;
    __u32 daddr;
    __u32 src_identity;
    __u32 dst_identity;
    __u32 ep_id;
    __u16 sport;
    __u16 dport;
    __u8 proto;
    __u8 tcp_flags;
    __u8 dir;
    __u8 verdict;
    __u8 reason;
    __u8 obs;
    __u16 pad;
    __u32 svc_id;       /* the service frontend the connection was sent to (0: none) */
    __u32 pad2;
};

#endif
