package net.traffix.core.device

import net.traffix.core.agent.Cancellable
import net.traffix.core.testing.FakeClock
import net.traffix.core.testing.ManualScheduler
import org.junit.Assert.assertEquals
import org.junit.Test

class WakingSchedulerTest {
    private val clock = FakeClock()
    private val inner = ManualScheduler(clock)

    /** Alarms the test fires by hand, as Android would after the phone slept. */
    private val alarms = ArrayList<Pair<Long, Runnable>>()
    private val cancelled = ArrayList<Long>()
    private val waker =
        WakingScheduler.Waker { delay, task ->
            alarms.add(delay to task)
            Cancellable { cancelled.add(delay) }
        }

    @Test
    fun longTimersAlsoSetAnAlarmAndRunOnceWhicheverComesFirst() {
        val s = WakingScheduler(inner, waker, minDelayMillis = 15_000)
        var runs = 0
        s.schedule(60_000, Runnable { runs++ })
        assertEquals(listOf(60_000L), alarms.map { it.first })
        // The phone slept: the thread's timer has not fired, the alarm has.
        alarms.single().second.run()
        inner.runDue()
        assertEquals(1, runs)
        // The thread's timer comes due later: the task does not run twice.
        inner.advance(60_000)
        assertEquals(1, runs)
    }

    @Test
    fun shortTimersStayOnTheThreadAndCancellingCancelsBoth() {
        val s = WakingScheduler(inner, waker, minDelayMillis = 15_000)
        var runs = 0
        s.schedule(2_000, Runnable { runs++ })
        assertEquals("no alarm for a socket's close", emptyList<Long>(), alarms.map { it.first })
        inner.advance(2_000)
        assertEquals(1, runs)
        val c = s.schedule(30_000, Runnable { runs++ })
        c.cancel()
        assertEquals(listOf(30_000L), cancelled)
        alarms.last().second.run() // an alarm that fired as it was cancelled
        inner.advance(30_000)
        assertEquals("a cancelled timer never runs", 1, runs)
    }
}
