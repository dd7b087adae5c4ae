package net.traffix.core.device

/**
 * Spaces out writes that cost the phone something (the notification, the settings file): at
 * most one every [intervalMillis], except a [Change.IMPORTANT] one (a phase or decision the
 * owner must see, a stop), which goes out at once. Decide with [due]; then call [wrote].
 */
class Pacer(private val intervalMillis: Long) {
    enum class Change { NONE, ROUTINE, IMPORTANT }

    private var lastMillis: Long? = null
    private var pending = false

    init {
        require(intervalMillis > 0) { "interval $intervalMillis" }
    }

    /** Whether to write now, at [nowMillis] (monotonic), after [change]. */
    fun due(nowMillis: Long, change: Change): Boolean {
        if (change != Change.NONE) pending = true
        if (!pending) return false
        val last = lastMillis ?: return true
        return change == Change.IMPORTANT || nowMillis - last >= intervalMillis || nowMillis < last
    }

    fun wrote(nowMillis: Long) {
        lastMillis = nowMillis
        pending = false
    }

    /** When a pending routine write becomes due; null when nothing waits. */
    fun nextDueMillis(): Long? = if (!pending) null else (lastMillis ?: 0) + intervalMillis

    companion object {
        /** The notification: every 15 s at most (it was every 2 s). */
        const val NOTIFICATION_MILLIS = 15_000L

        /** The usage counters and the run journal: every 30 s at most. */
        const val SETTINGS_MILLIS = 30_000L
    }
}
