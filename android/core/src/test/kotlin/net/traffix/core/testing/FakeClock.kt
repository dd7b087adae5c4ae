package net.traffix.core.testing

import java.util.concurrent.TimeUnit
import java.util.concurrent.atomic.AtomicLong
import net.traffix.core.time.Clock

/** A clock that moves only when a test says so. */
class FakeClock(startWallMillis: Long = 1_767_225_600_000) : Clock {
    private val nanos = AtomicLong(1_000_000_000)
    private val wall = AtomicLong(startWallMillis)

    override fun nanoTime(): Long = nanos.get()

    override fun wallMillis(): Long = wall.get()

    fun advanceMillis(ms: Long) {
        nanos.addAndGet(TimeUnit.MILLISECONDS.toNanos(ms))
        wall.addAndGet(ms)
    }
}
