package net.traffix.core.text

import java.io.File
import javax.xml.parsers.DocumentBuilderFactory
import net.traffix.core.agent.Phase
import net.traffix.core.policy.PauseReason
import org.junit.Assert.assertEquals
import org.junit.Assert.assertTrue
import org.junit.Test
import org.w3c.dom.Element

/** Every text key the core hands the app has its string in the app's resources. */
class UiTextTest {
    private fun stringsXml(): File {
        System.getProperty("traffix.strings")?.let { return File(it) }
        var dir: File? = File("").absoluteFile
        while (dir != null) {
            val f = File(dir, "android/app/src/main/res/values/strings.xml")
            if (f.isFile) return f
            val g = File(dir, "app/src/main/res/values/strings.xml")
            if (g.isFile) return g
            dir = dir.parentFile
        }
        throw AssertionError("app/src/main/res/values/strings.xml not found; set -Dtraffix.strings")
    }

    private fun strings(): Map<String, String> {
        val doc = DocumentBuilderFactory.newInstance().newDocumentBuilder().parse(stringsXml())
        val nodes = doc.getElementsByTagName("string")
        return (0 until nodes.length).associate { i -> (nodes.item(i) as Element).let { it.getAttribute("name") to it.textContent } }
    }

    @Test
    fun everyKeyHasAString() {
        val have = strings()
        val missing = missing(have)
        assertEquals("keys without a string in strings.xml: $missing", emptyList<UiText>(), missing)
        for (t in UiText.values()) assertTrue("${t.resName} is empty", have.getValue(t.resName).isNotBlank())
        assertEquals("resource names are unique", UiText.values().size, UiText.values().map { it.resName }.toSet().size)
    }

    @Test
    fun everyBatteryGuideHasItsSteps() {
        val have = strings()
        val missing = net.traffix.core.device.OemGuide.values().filter { it.resName !in have }
        assertEquals(emptyList<Any>(), missing)
    }

    @Test
    fun everyPhaseAndReasonHasAKey() {
        assertEquals(Phase.values().size, Phase.values().map { UiText.of(it) }.toSet().size)
        assertEquals(PauseReason.values().size, PauseReason.values().map { UiText.of(it) }.toSet().size)
    }

    @Test
    fun theCheckNamesAKeyWhoseStringIsMissing() {
        val have = strings()
        assertEquals(listOf(UiText.PHASE_SERVING), missing(have - "phase_serving"))
    }

    private fun missing(have: Map<String, String>) = UiText.values().filter { it.resName !in have }
}
