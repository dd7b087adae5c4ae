package net.traffix.core.agent

import net.traffix.core.policy.Action
import net.traffix.core.policy.ResourceDecision
import net.traffix.core.protocol.Frame

/*
 * One keepalive (docs/protocol.md "Heartbeats and drain"): the heartbeat is the tunnel's only
 * periodic traffic. No WebSocket pings (OkHttpTransport sets none); the server grants a busy
 * interval (WELCOME tag 3) and an idle one (tag 9), and both ends apply the same liveness rule.
 * Plain functions over plain values, tested on the JVM.
 */
object Keepalive {
    /** The slack of the liveness rule. */
    const val LIVENESS_SLACK_MILLIS = 10_000L

    /** The heartbeat interval of a server that sent no WELCOME yet (its default). */
    const val DEFAULT_INTERVAL_S = 15

    /**
     * How often the agent looks at its settings while paused with the tunnel closed: the
     * schedule and a new day (a daily cap) clear without any other event. A timer on the
     * scheduler thread only, no network.
     */
    const val PAUSED_RECHECK_MILLIS = 60_000L

    /** The heartbeat interval in force: the busy one with live streams, the idle one (never shorter) without. */
    fun intervalS(welcome: Frame.Welcome?, activeStreams: Int): Int {
        val busy = (welcome?.heartbeatIntervalS ?: DEFAULT_INTERVAL_S).coerceAtLeast(1)
        val idle = welcome?.idleHeartbeatIntervalS?.coerceAtLeast(busy) ?: busy
        return if (activeStreams > 0) busy else idle
    }

    /** The liveness rule: nothing heard for 2.5 × the interval in force + 10 s means the tunnel is dead. */
    fun livenessMillis(intervalS: Int): Long = intervalS.coerceAtLeast(1) * 2_500L + LIVENESS_SLACK_MILLIS

    /**
     * A hard pause: the owner's settings stop sharing and no live stream is left (a hard reason
     * cut them; a soft one let them finish). The agent reports it, sends DRAIN and closes the
     * tunnel, then waits for the settings to allow sharing again — it does not hold an idle
     * tunnel open (every reason of the resource policy counts: not on Wi-Fi, a data cap, the
     * battery floor, charging only, the schedule, Data Saver, Battery Saver).
     */
    fun closesTunnel(decision: ResourceDecision): Boolean = decision.action == Action.PAUSE
}
