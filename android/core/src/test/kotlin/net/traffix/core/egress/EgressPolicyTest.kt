package net.traffix.core.egress

import net.traffix.core.net.IpAddr
import net.traffix.core.net.SocketAddr
import org.junit.Assert.assertEquals
import org.junit.Assert.assertNull
import org.junit.Test

/** Table-driven unit tests ported from src/egress.rs, plus what the vectors do not exercise. */
class EgressPolicyTest {
    private fun ip(s: String): IpAddr = IpAddr.parse(s) ?: throw AssertionError("test address $s")

    private fun codeOf(r: TargetCheck): String =
        when (r) {
            is TargetCheck.Allowed -> "allowed"
            is TargetCheck.Refused -> r.refusal.code
        }

    @Test
    fun specialRangeTable() {
        val cases = listOf(
            "198.18.0.0" to "198.18.0.0/15",
            "198.19.255.255" to "198.18.0.0/15",
            "192.18.0.1" to null,
            "255.255.255.255" to "255.255.255.255/32",
            "255.255.255.254" to "240.0.0.0/4",
            "::ffff:10.1.2.3" to "10.0.0.0/8",
            "::ffff:8.8.8.8" to null,
            "64:ff9b::7f00:1" to "127.0.0.0/8",
            "64:ff9b::808:808" to null,
            "2002:c0a8:101::" to "192.168.0.0/16",
            "2002:808:808::" to null,
            "2001:0:4136:e378:8000:63bf:3fff:fdd2" to "192.0.2.0/24",
            "2001:0:4136:e378:8000:63bf:f7f7:f7f7" to "2001::/23",
            "2001:1ff:ffff:ffff:ffff:ffff:ffff:ffff" to "2001::/23",
            "2001:200::" to null,
            "::" to "::/128",
            "::1" to "::1/128",
            "::2" to "0.0.0.0/8",
            "2606:4700:4700::1111" to null,
        )
        for ((addr, want) in cases) assertEquals(addr, want, specialRange(ip(addr)))
    }

    @Test
    fun parseHostSpellings() {
        val cases = listOf(
            "127.0.0.1" to "allowed",
            "[::1]" to "allowed",
            "2130706433" to "non_canonical_numeric",
            "0177.0.0.1" to "non_canonical_numeric",
            "0x7f.1" to "non_canonical_numeric",
            "127.1" to "non_canonical_numeric",
            "127.0.0.1." to "non_canonical_numeric",
            "fe80::1%wlan0" to "zoned_ipv6",
            "[fe80::1%25wlan0]" to "zoned_ipv6",
            "%" to "invalid_name",
            "a\u0000b" to "invalid_name",
            "" to "invalid_name",
            "[::1" to "invalid_name",
            "[" to "invalid_name",
            "[]" to "invalid_name",
        )
        for ((host, want) in cases) assertEquals(host, want, codeOf(parseHost(host)))
        assertEquals(TargetCheck.Allowed(Host.Name("example.com")), parseHost("Example.COM."))
        assertEquals(TargetCheck.Allowed(Host.Ip(ip("::1"))), parseHost("[::1]"))
    }

    @Test
    fun allowPrivateLiftsOnlyAddressAndNameChecks() {
        val listener = SocketAddr.parse("127.0.0.1:8443")!!
        val policy = EgressPolicy(allowPrivateTargets = true, serverEndpoints = listOf(listener))
        assertEquals("allowed", codeOf(policy.checkTarget("127.0.0.1", 8080)))
        assertEquals("allowed", codeOf(policy.checkTarget("localhost", 8080)))
        assertEquals(TargetCheck.Refused(Refusal.ServerListener(listener)), policy.checkTarget("127.0.0.1", 8443))
        assertEquals("server_listener", codeOf(policy.checkTarget("::ffff:127.0.0.1", 8443)))
        assertEquals(TargetCheck.Refused(Refusal.BlockedPort(25)), policy.checkTarget("127.0.0.1", 25))
        assertEquals(TargetCheck.Refused(Refusal.BlockedPort(0)), policy.checkTarget("example.com", 0))
        assertEquals("non_canonical_numeric", codeOf(policy.checkTarget("127.1", 80)))
    }

    @Test
    fun ownNetworksMatchEmbeddedForms() {
        val policy = EgressPolicy(
            ownNetworks = listOf(OwnNetwork(ip("81.2.69.0"), 24), OwnNetwork(ip("2a02:8109:1234:5600::"), 64)),
        )
        assertEquals(Refusal.OwnAddress(ip("81.2.69.7")), policy.checkIp(ip("81.2.69.7")))
        assertNull(policy.checkIp(ip("81.2.70.7")))
        assertEquals("own_address", policy.checkIp(ip("64:ff9b::5102:4507"))?.code)
        assertEquals("own_address", policy.checkIp(ip("2a02:8109:1234:5600:1::9"))?.code)
        assertNull(policy.checkIp(ip("2a02:8109:1234:5601::9")))
    }

    @Test
    fun ownNetworkPrefixLengthsOutOfRangeReadAsSingleAddresses() {
        val policy = EgressPolicy(ownNetworks = listOf(OwnNetwork(ip("81.2.69.7"), 99), OwnNetwork(ip("2a02::1"), 200)))
        assertEquals("own_address", policy.checkIp(ip("81.2.69.7"))?.code)
        assertNull(policy.checkIp(ip("81.2.69.8")))
        assertEquals("own_address", policy.checkIp(ip("2a02::1"))?.code)
        assertNull(policy.checkIp(ip("2a02::2")))
        // An IPv4 address against an IPv4-mapped network entry.
        val mapped = EgressPolicy(ownNetworks = listOf(OwnNetwork(ip("::ffff:81.2.69.0"), 120)))
        assertEquals("own_address", mapped.checkIp(ip("81.2.69.200"))?.code)
        assertNull(mapped.checkIp(ip("81.2.70.1")))
    }

    @Test
    fun checkAddrAppliesToResolvedAddresses() {
        val policy = EgressPolicy(serverEndpoints = listOf(SocketAddr.parse("[2001:67c:2e8::160]:443")!!))
        assertNull(policy.checkAddr(SocketAddr(ip("93.184.215.14"), 443)))
        assertEquals("special_range", policy.checkAddr(SocketAddr(ip("10.1.2.3"), 443))?.code)
        assertEquals("blocked_port", policy.checkAddr(SocketAddr(ip("93.184.215.14"), 25))?.code)
        assertEquals("server_listener", policy.checkAddr(SocketAddr(ip("2001:67c:2e8::160"), 443))?.code)
    }

    @Test
    fun portAllowList() {
        assertEquals(
            listOf(1..79, 81..442, 444..8079, 8081..8442, 8444..65535),
            EgressPolicy.blockedPortsExcept(EgressPolicy.UNTRUSTED_CLIENT_PORTS),
        )
        assertEquals(listOf(2..65534), EgressPolicy.blockedPortsExcept(listOf(65535, 1)))
        assertEquals(listOf(1..65535), EgressPolicy.blockedPortsExcept(emptyList()))
        val policy = EgressPolicy(blockedPorts = EgressPolicy.blockedPortsExcept(EgressPolicy.UNTRUSTED_CLIENT_PORTS))
        assertEquals("allowed", codeOf(policy.checkTarget("example.com", 8443)))
        assertEquals(TargetCheck.Refused(Refusal.BlockedPort(22)), policy.checkTarget("example.com", 22))
    }

    @Test
    fun messagesQuoteClientText() {
        assertEquals(
            "\"0x7f.1\" is a non-canonical numeric address (use a dotted quad)",
            Refusal.NonCanonicalNumeric("0x7f.1").message,
        )
        assertEquals(
            "10.0.0.1 is in the special-purpose range 10.0.0.0/8",
            Refusal.SpecialRange(ip("10.0.0.1"), "10.0.0.0/8").message,
        )
        assertEquals("\"a\\r\\nb\\u{0}\" is a local name", Refusal.LocalName("a\r\nb\u0000").message)
    }

    @Test
    fun localNames() {
        for (n in listOf("localhost", "LOCALHOST.", "a.local", "x.home.arpa", "db.internal", "nas.lan", "lan")) {
            assertEquals(n, true, isLocalName(n))
        }
        for (n in listOf("localhost.example.com", "mylan", "notlocal", "home.arpa.example", "example.localhostx")) {
            assertEquals(n, false, isLocalName(n))
        }
    }

    @Test
    fun onlyProbesToTheServersOwnAddressAreExemptNeverItsTunnelEndpoint() {
        val server = SocketAddr.parse("81.2.69.7:8443") ?: throw AssertionError("addr")
        val p = EgressPolicy(serverEndpoints = listOf(server))
        val probe = SocketAddr.parse("81.2.69.7:7070") ?: throw AssertionError("addr")
        assertEquals(probe, p.probeEndpoint(probe))
        assertNull(p.probeEndpoint(server))
        assertNull(p.probeEndpoint(SocketAddr.parse("81.2.69.8:7070") ?: throw AssertionError("addr")))
        assertNull(p.probeEndpoint(SocketAddr.parse("10.0.0.1:7070") ?: throw AssertionError("addr")))
    }
}
