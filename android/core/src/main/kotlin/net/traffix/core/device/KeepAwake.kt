package net.traffix.core.device

import java.util.concurrent.TimeUnit
import net.traffix.core.protocol.NetworkType
import net.traffix.core.time.Clock

/**
 * When the phone must stay awake: a partial wake lock (and a Wi-Fi lock on Wi-Fi, so the radio
 * does not drop into power save mid-transfer) only while streams are live, kept for [lingerMillis]
 * after the last one ends so a burst of short streams does not flap the locks. An idle tunnel
 * needs neither: the agent's timers wake the phone by alarm when due ([WakingScheduler]), and
 * the server's frames wake it as they arrive. The app applies [update]'s answer.
 */
class KeepAwake(private val clock: Clock, private val lingerMillis: Long = 30_000) {
    /** Which locks to hold. */
    data class Locks(val wakeLock: Boolean, val wifiLock: Boolean) {
        companion object {
            val NONE = Locks(wakeLock = false, wifiLock = false)
        }
    }

    private var lastBusyNanos: Long? = null

    /**
     * The locks for [activeStreams] live streams on [network]; call on every status change and
     * again [recheckAfterMillis] later while lingering.
     */
    fun update(activeStreams: Int, network: NetworkType): Locks {
        val now = clock.nanoTime()
        if (activeStreams > 0) lastBusyNanos = now
        val since = lastBusyNanos ?: return Locks.NONE
        if (now - since >= TimeUnit.MILLISECONDS.toNanos(lingerMillis)) {
            lastBusyNanos = null
            return Locks.NONE
        }
        return Locks(wakeLock = true, wifiLock = network == NetworkType.WIFI)
    }

    /** While lingering, when to call [update] again to release; null when nothing is held. */
    fun recheckAfterMillis(): Long? {
        val since = lastBusyNanos ?: return null
        val left = lingerMillis - TimeUnit.NANOSECONDS.toMillis(clock.nanoTime() - since)
        return left.coerceAtLeast(0)
    }
}
