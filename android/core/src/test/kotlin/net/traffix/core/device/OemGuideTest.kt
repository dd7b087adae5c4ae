package net.traffix.core.device

import org.junit.Assert.assertEquals
import org.junit.Test

class OemGuideTest {
    @Test
    fun makersAndTheirSubBrandsFindTheirGuide() {
        assertEquals(OemGuide.XIAOMI, OemGuide.forMaker("Xiaomi"))
        assertEquals(OemGuide.XIAOMI, OemGuide.forMaker("unknown", "Redmi"))
        assertEquals(OemGuide.HUAWEI, OemGuide.forMaker("HONOR"))
        assertEquals(OemGuide.SAMSUNG, OemGuide.forMaker(" samsung "))
        assertEquals(OemGuide.OPPO, OemGuide.forMaker("realme"))
        assertEquals(OemGuide.VIVO, OemGuide.forMaker("vivo"))
        assertEquals(OemGuide.OTHER, OemGuide.forMaker("Google", "google"))
        assertEquals(OemGuide.OTHER, OemGuide.forMaker(null))
        assertEquals("no maker by a prefix of its name", OemGuide.OTHER, OemGuide.forMaker("vivobook"))
    }
}
