package net.traffix.core.egress

import net.traffix.core.net.IpAddr
import net.traffix.core.net.SocketAddr
import net.traffix.core.testing.Case
import net.traffix.core.testing.Vectors
import org.junit.Assert.assertTrue
import org.junit.Assert.fail
import org.junit.Test

/**
 * Runs the shared egress vectors (tests/vectors/egress.json, SECURITY.md §1; the file
 * tests/egress_vectors.rs reads) against [EgressPolicy]. Every case is checked and all
 * mismatches are reported together.
 */
class EgressVectorsTest {
    private val doc = Vectors.load("egress.json")

    /** Compares one outcome with the case; returns the mismatch, if any. */
    private fun judge(case: Case, allowed: Host?, refusal: Refusal?): String? {
        val name = case.name
        return when (val expect = case.str("expect")) {
            "allow" -> when {
                refusal != null -> "$name: refused ($refusal), expected allow"
                !case.has("normalized") -> null
                allowed?.toString() != case.str("normalized") ->
                    "$name: normalized to $allowed, expected ${case.str("normalized")}"
                else -> null
            }
            "refuse" -> when {
                refusal == null -> "$name: allowed, expected refuse"
                refusal.code != case.str("code") -> "$name: refused as ${refusal.code} ($refusal), expected ${case.str("code")}"
                refusal.message.isEmpty() -> "$name: empty message"
                case.has("range") && (refusal as? Refusal.SpecialRange)?.range != case.str("range") ->
                    "$name: range ${(refusal as? Refusal.SpecialRange)?.range}, expected ${case.str("range")}"
                else -> null
            }
            else -> "$name: unknown expect $expect"
        }
    }

    @Test
    fun vectors() {
        val failures = ArrayList<String>()
        val names = HashSet<String>()
        val codesSeen = HashSet<String>()
        val rangesSeen = HashSet<String>()
        var total = 0

        fun record(case: Case, allowed: Host?, refusal: Refusal?) {
            total++
            refusal?.let {
                codesSeen.add(it.code)
                if (it is Refusal.SpecialRange) rangesSeen.add(it.range)
            }
            judge(case, allowed, refusal)?.let { failures.add(it) }
            if (!names.add(case.name)) failures.add("duplicate case name ${case.name}")
        }

        fun recordTarget(case: Case, policy: EgressPolicy) =
            when (val r = policy.checkTarget(case.str("host"), case.int("port"))) {
                is TargetCheck.Allowed -> record(case, r.host, null)
                is TargetCheck.Refused -> record(case, null, r.refusal)
            }

        for (case in Case.listOf(doc, "cases")) {
            recordTarget(case, EgressPolicy(allowPrivateTargets = case.bool("allow_private_targets")))
        }
        for (case in Case.listOf(doc, "address_cases")) {
            val addr = IpAddr.parse(case.str("addr")) ?: throw AssertionError("bad addr in $case")
            val policy = EgressPolicy(allowPrivateTargets = case.bool("allow_private_targets"))
            record(case, null, policy.checkIp(addr))
        }
        for (case in Case.listOf(doc, "own_network_cases")) {
            val policy = EgressPolicy(
                allowPrivateTargets = case.bool("allow_private_targets"),
                ownNetworks = case.strings("own_networks").map {
                    OwnNetwork.parse(it) ?: throw AssertionError("bad network $it")
                },
                serverEndpoints = case.strings("server_endpoints").map {
                    SocketAddr.parse(it) ?: throw AssertionError("bad endpoint $it")
                },
            )
            recordTarget(case, policy)
        }

        if (failures.isNotEmpty()) fail("${failures.size} of $total vectors failed:\n" + failures.joinToString("\n"))
        assertTrue("no vectors read", total > 500)

        // The vectors themselves must keep covering every refusal and every §1 range.
        for (code in Refusal.CODES) assertTrue("no vector is refused as $code", code in codesSeen)
        for (range in SECTION_1_RANGES) assertTrue("no vector is refused in $range", range in rangesSeen)
    }

    @Test
    fun everyDefaultBlockedPortRangeIsInTheVectors() {
        val refusedPorts = Case.listOf(doc, "cases").filter { it.optStr("code") == "blocked_port" }.map { it.int("port") }.toSet()
        for (range in EgressPolicy.DEFAULT_BLOCKED_PORTS) {
            assertTrue("no vector refuses port ${range.first}", range.first in refusedPorts)
            assertTrue("no vector refuses port ${range.last}", range.last in refusedPorts)
        }
    }

    @Test
    fun everyTableRangeIsASection1Range() {
        // The table may not drift from SECURITY.md §1: the embedded forms (::ffff:0:0/96, ::/96,
        // 64:ff9b::/96, 2002::/16, 2001::/32) report IPv4 ranges and are not in the list.
        val reported = SPECIAL_RANGE_TEXTS.toSet() - setOf("::ffff:0:0/96", "::/96", "64:ff9b::/96", "2002::/16", "2001::/32")
        assertTrue("table and §1 differ: ${reported.symmetricDiff(SECTION_1_RANGES.toSet())}", reported == SECTION_1_RANGES.toSet())
    }

    private fun Set<String>.symmetricDiff(other: Set<String>) = (this - other) + (other - this)

    companion object {
        val SECTION_1_RANGES = listOf(
            "0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16", "172.16.0.0/12",
            "192.0.0.0/24", "192.0.2.0/24", "192.31.196.0/24", "192.52.193.0/24", "192.88.99.0/24",
            "192.168.0.0/16", "192.175.48.0/24", "198.18.0.0/15", "198.51.100.0/24", "203.0.113.0/24",
            "224.0.0.0/4", "240.0.0.0/4", "255.255.255.255/32", "::/128", "::1/128", "64:ff9b:1::/48",
            "100::/64", "2001::/23", "2001:db8::/32", "3fff::/20", "5f00::/16", "fc00::/7", "fe80::/10",
            "fec0::/10", "ff00::/8",
            // IPv4-translated (SIIT), refused whole since the hardening of the open-internet issue.
            "::ffff:0:0:0/96",
        )
    }
}
