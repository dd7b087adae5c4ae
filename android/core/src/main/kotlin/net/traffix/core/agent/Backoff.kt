package net.traffix.core.agent

/**
 * Reconnect delays: exponential from [minMillis] to [maxMillis], each with full jitter in
 * [d/2, d] so a thousand phones do not return to a restarted server in the same second. A tunnel
 * that came up (or lived [stableMillis]) starts the sequence over: after a server restart a node
 * is back within a second, not after a grown delay. The same numbers as the Rust agent.
 *
 * Not thread-safe: the agent's thread owns it.
 */
class Backoff(
    val minMillis: Long = 500,
    val maxMillis: Long = 60_000,
    val stableMillis: Long = 30_000,
    /** Uniform in [0, 1); injected so tests are exact. */
    private val random: () -> Double,
) {
    init {
        require(minMillis in 1..maxMillis) { "backoff bounds $minMillis..$maxMillis" }
    }

    private var next = minMillis

    /** The un-jittered delay the next failure will wait (for tests and the status screen). */
    val nextBase: Long get() = next

    /**
     * The delay before the next attempt, after a connection that [established] a tunnel or
     * lasted [livedMillis].
     */
    fun failed(established: Boolean, livedMillis: Long): Long {
        if (established || livedMillis >= stableMillis) next = minMillis
        val base = next
        next = minOf(base * 2, maxMillis)
        val r = random().coerceIn(0.0, 1.0)
        return base / 2 + (base / 2 * r).toLong()
    }

    /** Starts over (the owner pressed "retry", or the network changed). */
    fun reset() {
        next = minMillis
    }
}
