package net.traffix.core.agent

import net.traffix.core.net.IpAddr
import net.traffix.core.policy.Action
import net.traffix.core.policy.PauseReason
import net.traffix.core.policy.ResourceDecision
import net.traffix.core.protocol.Frame
import net.traffix.core.util.Bytes
import org.junit.Assert.assertEquals
import org.junit.Assert.assertFalse
import org.junit.Assert.assertTrue
import org.junit.Test

class KeepaliveTest {
    private fun welcome(busy: Int, idle: Int?) =
        Frame.Welcome(Bytes.of(ByteArray(16)), IpAddr.v4(100, 64, 0, 9), busy, 64, 262_144, 65_536, 300, 16 shl 20, idle)

    @Test
    fun theIntervalInForceIsBusyWithStreamsAndIdleWithout() {
        assertEquals(15, Keepalive.intervalS(welcome(15, 60), 3))
        assertEquals(60, Keepalive.intervalS(welcome(15, 60), 0))
        assertEquals("an old server: one interval", 15, Keepalive.intervalS(welcome(15, null), 0))
        assertEquals("an idle interval is never shorter", 30, Keepalive.intervalS(welcome(30, 10), 0))
        assertEquals("0 reads as 1", 1, Keepalive.intervalS(welcome(0, null), 1))
        assertEquals("before WELCOME", Keepalive.DEFAULT_INTERVAL_S, Keepalive.intervalS(null, 0))
    }

    @Test
    fun theLivenessRuleMatchesTheServers() {
        // docs/protocol.md and src/tunnel/protocol.rs liveness_timeout: 2.5 × interval + 10 s.
        assertEquals(47_500L, Keepalive.livenessMillis(15))
        assertEquals(160_000L, Keepalive.livenessMillis(60))
        assertEquals(12_500L, Keepalive.livenessMillis(0))
    }

    @Test
    fun everyPauseClosesTheTunnelAndADrainOrServeDoesNot() {
        for (r in PauseReason.values()) {
            assertTrue(r.name, Keepalive.closesTunnel(ResourceDecision(Action.PAUSE, setOf(r))))
        }
        assertFalse(Keepalive.closesTunnel(ResourceDecision(Action.DRAIN, setOf(PauseReason.OUTSIDE_SCHEDULE))))
        assertFalse(Keepalive.closesTunnel(ResourceDecision.SERVE))
    }
}
