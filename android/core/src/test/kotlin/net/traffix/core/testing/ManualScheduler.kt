package net.traffix.core.testing

import java.util.PriorityQueue
import java.util.concurrent.TimeUnit
import net.traffix.core.agent.Cancellable
import net.traffix.core.agent.Scheduler

/**
 * A [Scheduler] the test runs by hand on [clock]: [runDue] runs every task that is due, in
 * order; [advance] moves the clock and runs what became due. Other threads (stream relays) may
 * post; only the test thread runs tasks.
 */
class ManualScheduler(val clock: FakeClock) : Scheduler {
    private class Task(val at: Long, val seq: Long, val run: Runnable) {
        @Volatile var cancelled = false
    }

    private val queue = PriorityQueue<Task>(compareBy<Task>({ it.at }, { it.seq }))
    private var seq = 0L
    private var shut = false

    override fun execute(task: Runnable) {
        schedule(0, task)
    }

    @Synchronized
    override fun schedule(delayMillis: Long, task: Runnable): Cancellable {
        if (shut) return Cancellable {}
        val t = Task(clock.nanoTime() + TimeUnit.MILLISECONDS.toNanos(maxOf(delayMillis, 0)), seq++, task)
        queue.add(t)
        return Cancellable { t.cancelled = true }
    }

    @Synchronized
    override fun shutdown() {
        shut = true
        queue.clear()
    }

    @Synchronized
    private fun nextDue(): Task? {
        val head = queue.peek() ?: return null
        if (head.at > clock.nanoTime()) return null
        return queue.poll()
    }

    /** Runs every due task (including ones they post); returns how many ran. */
    fun runDue(): Int {
        var n = 0
        while (true) {
            val t = nextDue() ?: return n
            if (!t.cancelled) {
                t.run.run()
                n++
            }
        }
    }

    /** Moves the clock by [ms] in one step and runs what is due. */
    fun advance(ms: Long): Int {
        clock.advanceMillis(ms)
        return runDue()
    }

    /** Runs tasks until [cond] holds, letting real threads post for up to [waitMillis] of real time. */
    fun runUntil(waitMillis: Long = 10_000, cond: () -> Boolean) {
        val deadline = System.nanoTime() + TimeUnit.MILLISECONDS.toNanos(waitMillis)
        while (true) {
            runDue()
            if (cond()) return
            check(System.nanoTime() < deadline) { "condition not met within $waitMillis ms" }
            Thread.sleep(2)
        }
    }
}
