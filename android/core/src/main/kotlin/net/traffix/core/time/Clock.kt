package net.traffix.core.time

/**
 * Time as the core sees it, injected so tests decide when it passes (no sleeping tests).
 * Only [nanoTime] differences mean anything; [wallMillis] is for timestamps and calendars.
 */
interface Clock {
    /** Monotonic nanoseconds, as System.nanoTime. */
    fun nanoTime(): Long

    /** Milliseconds since the epoch, as System.currentTimeMillis. */
    fun wallMillis(): Long

    companion object {
        val SYSTEM: Clock = object : Clock {
            override fun nanoTime(): Long = System.nanoTime()

            override fun wallMillis(): Long = System.currentTimeMillis()
        }
    }
}
