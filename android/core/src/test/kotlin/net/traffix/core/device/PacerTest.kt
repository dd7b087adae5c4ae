package net.traffix.core.device

import net.traffix.core.device.Pacer.Change
import org.junit.Assert.assertEquals
import org.junit.Assert.assertFalse
import org.junit.Assert.assertNull
import org.junit.Assert.assertTrue
import org.junit.Test

class PacerTest {
    @Test
    fun routineChangesWaitForTheIntervalImportantOnesDoNot() {
        val p = Pacer(15_000)
        assertFalse("nothing changed", p.due(0, Change.NONE))
        assertTrue("the first write goes out", p.due(0, Change.ROUTINE))
        p.wrote(0)
        assertFalse(p.due(2_000, Change.ROUTINE)) // every 2 s before: not any more
        assertEquals(15_000L, p.nextDueMillis())
        assertFalse(p.due(14_999, Change.NONE))
        assertTrue("the pending change is due", p.due(15_000, Change.NONE))
        p.wrote(15_000)
        assertNull(p.nextDueMillis())
        assertTrue("a phase change is shown at once", p.due(16_000, Change.IMPORTANT))
        p.wrote(16_000)
        assertFalse(p.due(40_000, Change.NONE))
        assertTrue("a clock that went back does not block writes", p.due(1_000, Change.ROUTINE))
    }
}
